//! Access tokens (JWT, HS256 pinned, 15 minutes) and opaque secrets
//! (refresh tokens, one-time tokens): 256-bit random, stored only as a
//! SHA-256 hash.

use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::model::Role;
use crate::ids::{OrgId, UserId};

pub const ISSUER: &str = "bwenge";
pub const AUDIENCE: &str = "bwenge-api";
/// Clock skew tolerated between nodes, in seconds.
const LEEWAY_SECS: i64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    pub org: OrgId,
    pub role: Role,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub jti: Uuid,
    /// The user's token version when issued; a bump revokes the token.
    pub ver: i64,
}

#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl_secs: i64,
}

impl TokenKeys {
    pub fn new(secret: &str, access_ttl_secs: i64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        // Expiry and not-before are checked against the service's clock in
        // `verify`, so tests can pause and advance time.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            access_ttl_secs,
        }
    }

    pub fn issue(
        &self,
        user: UserId,
        org: OrgId,
        role: Role,
        version: i64,
        now: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let iat = now.timestamp();
        let claims = Claims {
            sub: user,
            org,
            role,
            iat,
            nbf: iat,
            exp: iat + self.access_ttl_secs,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            jti: Uuid::new_v4(),
            ver: version,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The claims of a valid token; `None` for anything else (another
    /// algorithm, `none`, a bad signature, expired, not yet valid, wrong
    /// issuer or audience, garbage).
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<Claims> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()?
            .claims;
        let now = now.timestamp();
        (claims.nbf - LEEWAY_SECS <= now && now < claims.exp + LEEWAY_SECS).then_some(claims)
    }
}

/// A fresh 256-bit secret, URL-safe.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// How a secret is stored: its SHA-256, hex. The secret itself is never kept.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let keys = TokenKeys::new("a-secret-of-some-length-0123456789", 900);
        let user = UserId::new();
        let token = keys
            .issue(user, OrgId::new(), Role::Teacher, 3, Utc::now())
            .unwrap();
        let claims = keys.verify(&token, Utc::now()).unwrap();
        assert_eq!(claims.sub, user);
        assert_eq!(claims.ver, 3);
        assert_eq!(claims.role, Role::Teacher);
        let other = TokenKeys::new("another-secret-of-some-length-012345", 900);
        assert!(other.verify(&token, Utc::now()).is_none());
        let expired = keys
            .issue(
                user,
                OrgId::new(),
                Role::Teacher,
                0,
                Utc::now() - chrono::Duration::hours(1),
            )
            .unwrap();
        assert!(keys.verify(&expired, Utc::now()).is_none());
        assert!(keys.verify("garbage", Utc::now()).is_none());
    }

    #[test]
    fn secrets_are_long_and_hashed() {
        let s = new_secret();
        assert_eq!(s.len(), 43);
        assert_ne!(new_secret(), s);
        assert_eq!(hash_secret(&s).len(), 64);
        assert_eq!(hash_secret(&s), hash_secret(&s));
    }
}
