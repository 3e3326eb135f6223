//! The server's side of signed asset URLs: owns the signing key (derived
//! from `secrets.asset_signing_key`), the choice of expiry, and the URLs
//! handed to clients. The signature itself is `bwenge_avatars::signing`'s.
//!
//! - **Key.** `secrets.asset_signing_key` is used as it is when it has at
//!   least 32 bytes, which production always has (configuration refuses to
//!   start otherwise). In development and test a shorter value (set by hand
//!   through `BWENGE_SECRETS__ASSET_SIGNING_KEY`; the generated ones are 64
//!   characters) is stretched to the hex SHA-256 of itself, so a short dev
//!   secret still works; in production a short one is refused here too.
//! - **Expiry.** `exp` is `now + assets.url_ttl_secs`, rounded *down* to a
//!   multiple of a tenth of the TTL (at most 300 s): URLs handed out within
//!   the same few minutes are identical, so browsers and CDNs reuse what
//!   they cached, and every URL is valid for between 0.9 × TTL and TTL.
//! - **URL.** `assets.public_base_url` (empty: relative to this server)
//!   followed by `/assets/{key}?exp={exp}&sig={sig}`.

use bwenge_avatars::signing::{SignatureError, UrlSigner, WeakSecretError};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::config::{RunEnv, Settings};

/// Longest expiry rounding step, in seconds.
const MAX_ROUNDING_SECS: i64 = 300;

/// A URL handed to a client, and when it stops working.
#[derive(Debug, Clone)]
pub struct SignedUrl {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Signs and checks asset URLs with the configured key and lifetime.
#[derive(Debug, Clone)]
pub struct AssetSigner {
    signer: UrlSigner,
    base: String,
    ttl: i64,
}

impl AssetSigner {
    /// The signer of these settings (see the module doc for the key).
    pub fn from_settings(settings: &Settings) -> Result<Self, WeakSecretError> {
        let secret = settings.secrets.asset_signing_key.expose().as_bytes();
        let signer = match UrlSigner::new(secret) {
            Ok(s) => s,
            Err(e) if settings.env == RunEnv::Production => return Err(e),
            Err(_) => UrlSigner::new(hex::encode(Sha256::digest(secret)))?,
        };
        Ok(Self {
            signer,
            base: settings
                .assets
                .public_base_url
                .trim()
                .trim_end_matches('/')
                .to_owned(),
            ttl: i64::try_from(settings.assets.url_ttl_secs).unwrap_or(i64::MAX / 4),
        })
    }

    /// The expiry (Unix seconds) of a URL signed at `now`.
    pub fn expiry(&self, now: i64) -> i64 {
        let exp = now.saturating_add(self.ttl);
        let step = (self.ttl / 10).min(MAX_ROUNDING_SECS);
        if step > 1 {
            exp - exp.rem_euclid(step)
        } else {
            exp
        }
    }

    /// The URL of `key`, valid until `exp`.
    pub fn url(&self, key: &str, exp: i64) -> SignedUrl {
        SignedUrl {
            url: format!("{}{}", self.base, self.signer.signed_path(key, exp)),
            expires_at: DateTime::from_timestamp(exp, 0).unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// The signature of `key` until `exp`, for URLs of another shape than
    /// `/assets/{key}` (a source's file link).
    pub fn signature(&self, key: &str, exp: i64) -> String {
        self.signer.sign(key, exp)
    }

    /// Checks a request's `exp` and `sig` for `key` at `now`, in constant
    /// time; returns the expiry.
    pub fn verify(
        &self,
        key: &str,
        exp: Option<&str>,
        sig: Option<&str>,
        now: i64,
    ) -> Result<i64, SignatureError> {
        let exp: i64 = exp
            .and_then(|e| e.parse().ok())
            .ok_or(SignatureError::Invalid)?;
        let sig = sig.ok_or(SignatureError::Invalid)?;
        self.signer.verify(key, exp, sig, now)?;
        Ok(exp)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn signer(ttl: u64, secret: &str, env: RunEnv) -> Result<AssetSigner, WeakSecretError> {
        let dir = tempfile::tempdir().unwrap();
        let env_vars = [
            ("BWENGE_ENV".to_owned(), "test".to_owned()),
            (
                "BWENGE_DATA_DIR".to_owned(),
                dir.path().to_str().unwrap().to_owned(),
            ),
        ]
        .into_iter()
        .collect();
        let (mut settings, _) = Settings::load(&crate::config::LoadOptions {
            env: env_vars,
            ..Default::default()
        })
        .unwrap();
        settings.assets.url_ttl_secs = ttl;
        settings.assets.public_base_url = "https://cdn.example/".into();
        settings.secrets.asset_signing_key = crate::config::Secret::new(secret);
        settings.env = env;
        AssetSigner::from_settings(&settings)
    }

    #[test]
    fn short_secrets_are_stretched_outside_production_only() {
        assert!(signer(3600, "short", RunEnv::Test).is_ok());
        assert!(signer(3600, "short", RunEnv::Production).is_err());
        let long = "0123456789abcdef0123456789abcdef";
        assert!(signer(3600, long, RunEnv::Production).is_ok());
    }

    #[test]
    fn expiry_is_rounded_down_within_a_tenth_of_the_ttl() {
        let s = signer(3600, "0123456789abcdef0123456789abcdef", RunEnv::Test).unwrap();
        for now in [1_700_000_000i64, 1_700_000_123, 1_700_000_299] {
            let exp = s.expiry(now);
            assert!(exp <= now + 3600 && exp > now + 3600 - 300, "{now} {exp}");
            assert_eq!(exp % 300, 0);
        }
        let one = signer(1, "0123456789abcdef0123456789abcdef", RunEnv::Test).unwrap();
        assert_eq!(one.expiry(100), 101);
    }

    #[test]
    fn urls_verify_until_they_expire() {
        let s = signer(3600, "0123456789abcdef0123456789abcdef", RunEnv::Test).unwrap();
        let exp = s.expiry(1_700_000_000);
        let u = s.url("models/a/v1-x.glb", exp);
        assert!(
            u.url
                .starts_with("https://cdn.example/assets/models/a/v1-x.glb?exp=")
        );
        assert_eq!(u.expires_at.timestamp(), exp);
        let sig = u.url.rsplit_once("sig=").unwrap().1;
        let e = exp.to_string();
        assert_eq!(
            s.verify("models/a/v1-x.glb", Some(&e), Some(sig), 1_700_000_000),
            Ok(exp)
        );
        assert_eq!(
            s.verify("models/a/v1-x.glb", Some(&e), Some(sig), exp + 1),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            s.verify("models/a/v1-y.glb", Some(&e), Some(sig), 1_700_000_000),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            s.verify("models/a/v1-x.glb", Some("soon"), Some(sig), 0),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            s.verify("models/a/v1-x.glb", Some(&e), None, 0),
            Err(SignatureError::Invalid)
        );
    }
}
