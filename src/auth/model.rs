//! Identity types parsed at the edge: `Email`, `Password`, `FullName`,
//! `Role`. A request body becomes these through `parse`, or is refused with
//! `validation_failed` naming the field.

use serde::{Deserialize, Serialize};

use crate::validation::Invalid;

/// A normalised email address: trimmed, lower-cased, one `@`, a dot in the
/// domain, no spaces, at most 254 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let email = raw.trim().to_lowercase();
        let bad = || Invalid::new("email", "Enter a valid email address.");
        if email.is_empty() || email.len() > 254 || email.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        let (local, domain) = email.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || domain.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(bad());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A person's name: 1–200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        let count = name.chars().count();
        if count == 0 || count > 200 {
            return Err(Invalid::new(
                "full_name",
                "The name must be 1 to 200 characters.",
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid::new(
                "full_name",
                "The name must not contain control characters.",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An organisation's name: the same rules as a person's name.
pub fn parse_org_name(raw: &str) -> Result<String, Invalid> {
    FullName::parse(raw).map(|n| n.0).map_err(|_| {
        Invalid::new(
            "organization_name",
            "The organisation name must be 1 to 200 characters.",
        )
    })
}

/// A new password: 12–128 characters, not the email or the name.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Password {
    /// Checks a *new* password. `field` names it in errors (`password`,
    /// `new_password`).
    pub fn parse_new(
        raw: &str,
        field: &str,
        email: &Email,
        name: Option<&FullName>,
    ) -> Result<Self, Invalid> {
        let len = raw.chars().count();
        if len < 12 {
            return Err(Invalid::new(
                field,
                "The password must be at least 12 characters.",
            ));
        }
        if len > 128 {
            return Err(Invalid::new(
                field,
                "The password must be at most 128 characters.",
            ));
        }
        let lower = raw.trim().to_lowercase();
        if lower == email.as_str() || lower == email.as_str().split('@').next().unwrap_or("") {
            return Err(Invalid::new(
                field,
                "The password must not be your email address.",
            ));
        }
        if let Some(name) = name
            && lower == name.as_str().to_lowercase()
        {
            return Err(Invalid::new(field, "The password must not be your name."));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A password presented at login: only bounded, never judged.
    pub fn presented(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() || raw.chars().count() > 1024 {
            return Err(Invalid::new("password", "Enter your password."));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Teacher,
    Student,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Teacher => "teacher",
            Role::Student => "student",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw.trim() {
            "admin" => Ok(Role::Admin),
            "teacher" => Ok(Role::Teacher),
            "student" => Ok(Role::Student),
            _ => Err(Invalid::new(
                "role",
                "The role must be admin, teacher or student.",
            )),
        }
    }

    /// Teachers and admins manage material, personas and read analytics.
    pub fn is_staff(self) -> bool {
        matches!(self, Role::Admin | Role::Teacher)
    }

    /// Whether someone of this role may invite someone as `invited`:
    /// admins any role, teachers students, students nobody.
    pub fn may_invite(self, invited: Role) -> bool {
        match self {
            Role::Admin => true,
            Role::Teacher => invited == Role::Student,
            Role::Student => false,
        }
    }

    /// The roles this role may not invite.
    pub fn beyond_invite_reach(self) -> Vec<Role> {
        [Role::Admin, Role::Teacher, Role::Student]
            .into_iter()
            .filter(|r| !self.may_invite(*r))
            .collect()
    }
}

impl std::str::FromStr for Role {
    type Err = Invalid;

    fn from_str(raw: &str) -> Result<Self, Invalid> {
        Role::parse(raw)
    }
}

crate::sql_text_enum!(Role);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@School.ORG ").unwrap().as_str(),
            "ada@school.org"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@school.org",
            "ada@school",
            "a b@school.org",
            "a@@b.org",
            "ada@.org",
            "ada@school.org.",
            "ada@sch..org",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(Email::parse(&format!("{}@x.org", "a".repeat(250))).is_err());
    }

    #[test]
    fn passwords_have_bounds_and_are_not_the_email_or_name() {
        let email = Email::parse("ada@school.org").unwrap();
        let name = FullName::parse("Ada Lovelace Byron").unwrap();
        assert!(Password::parse_new("short", "password", &email, Some(&name)).is_err());
        assert!(Password::parse_new(&"x".repeat(129), "password", &email, Some(&name)).is_err());
        assert!(Password::parse_new("ADA@school.org", "password", &email, Some(&name)).is_err());
        assert!(
            Password::parse_new("ada lovelace byron", "password", &email, Some(&name)).is_err()
        );
        assert!(
            Password::parse_new("correct horse battery", "password", &email, Some(&name)).is_ok()
        );
        assert!(Password::parse_new(&"é".repeat(12), "password", &email, None).is_ok());
        let err = Password::parse_new("short", "new_password", &email, None).unwrap_err();
        assert_eq!(err.field, "new_password");
    }

    #[test]
    fn names_have_bounds() {
        assert!(FullName::parse("  ").is_err());
        assert!(FullName::parse(&"n".repeat(201)).is_err());
        assert!(FullName::parse(&"n".repeat(200)).is_ok());
        assert!(FullName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn roles_parse() {
        assert_eq!(Role::parse("teacher").unwrap(), Role::Teacher);
        assert!(Role::parse("owner").is_err());
    }
}
