//! Access tokens: HS256 JWTs whose `sub` is the user id.
//!
//! The signature is the authority. A platform that already has users mints these
//! with the shared `AUTH_SECRET`; `POST /users` mints them for users boxoffice
//! creates itself. Only HS256 is accepted: `alg: none` and every other algorithm
//! are refused, so a token cannot choose how it is checked.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a token minted by `POST /users` is valid.
pub const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
}

/// Why a token was refused. Every variant is a `401 unauthorized` to the client;
/// the distinction is for logs and tests.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed, badly signed or of another algorithm")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token's subject is not a positive user id")]
    BadSubject,
}

/// Signs and verifies access tokens with one secret.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Tokens of this service are checked to the second: an expired token is
        // refused even if it expired a moment ago.
        validation.leeway = 0;
        validation.validate_nbf = true;
        // Platform-minted tokens may carry an audience of their own.
        validation.validate_aud = false;
        TokenKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Mints a token for `user_id`, valid for `lifetime`; returns it with its expiry.
    pub fn mint(&self, user_id: i64, lifetime: Duration) -> (String, DateTime<Utc>) {
        let now = Utc::now();
        let expires_at = now + lifetime;
        let claims = Claims {
            sub: user_id.to_string(),
            exp: expires_at.timestamp(),
            iat: Some(now.timestamp()),
        };
        // HMAC signing of a small struct has no failure mode with a valid key.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default();
        (token, expires_at)
    }

    /// Verifies a token and returns its user id.
    pub fn verify(&self, token: &str) -> Result<i64, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        // RFC 7515 §4.1.11: a token whose header names extensions that must be
        // understood ("crit") is refused by a verifier that knows none.
        if data.header.crit.is_some() {
            return Err(TokenError::Invalid);
        }
        parse_user_id(&data.claims.sub).ok_or(TokenError::BadSubject)
    }
}

/// A user id as a decimal string of a positive i64: digits only, no sign, no spaces.
fn parse_user_id(sub: &str) -> Option<i64> {
    if sub.is_empty() || !sub.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    sub.parse::<i64>().ok().filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-secret-0123456789";

    fn sign(claims: &serde_json::Value, secret: &str, alg: Algorithm) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn in_an_hour() -> i64 {
        Utc::now().timestamp() + 3600
    }

    #[test]
    fn minted_tokens_verify() {
        let keys = TokenKeys::new(SECRET);
        let (token, expires_at) = keys.mint(42, ACCESS_TOKEN_LIFETIME);
        assert_eq!(keys.verify(&token), Ok(42));
        assert!(expires_at > Utc::now() + chrono::Duration::hours(23));
    }

    #[test]
    fn platform_tokens_with_the_shared_secret_verify() {
        let keys = TokenKeys::new(SECRET);
        let token = sign(
            &serde_json::json!({"sub": "7", "exp": in_an_hour(), "aud": "platform"}),
            SECRET,
            Algorithm::HS256,
        );
        assert_eq!(keys.verify(&token), Ok(7));
    }

    #[test]
    fn refuses_bad_tokens() {
        let keys = TokenKeys::new(SECRET);
        let exp = in_an_hour();
        let cases = [
            ("garbage", "nonsense".to_owned(), TokenError::Invalid),
            (
                "wrong secret",
                sign(
                    &serde_json::json!({"sub": "1", "exp": exp}),
                    "other-secret-0123456",
                    Algorithm::HS256,
                ),
                TokenError::Invalid,
            ),
            (
                "HS512",
                sign(
                    &serde_json::json!({"sub": "1", "exp": exp}),
                    SECRET,
                    Algorithm::HS512,
                ),
                TokenError::Invalid,
            ),
            (
                "no exp",
                sign(&serde_json::json!({"sub": "1"}), SECRET, Algorithm::HS256),
                TokenError::Invalid,
            ),
            (
                "expired",
                sign(
                    &serde_json::json!({"sub": "1", "exp": Utc::now().timestamp() - 5}),
                    SECRET,
                    Algorithm::HS256,
                ),
                TokenError::Expired,
            ),
            (
                "numeric sub",
                sign(
                    &serde_json::json!({"sub": 1, "exp": exp}),
                    SECRET,
                    Algorithm::HS256,
                ),
                TokenError::Invalid,
            ),
            (
                "zero sub",
                sign(
                    &serde_json::json!({"sub": "0", "exp": exp}),
                    SECRET,
                    Algorithm::HS256,
                ),
                TokenError::BadSubject,
            ),
            (
                "signed sub",
                sign(
                    &serde_json::json!({"sub": "-3", "exp": exp}),
                    SECRET,
                    Algorithm::HS256,
                ),
                TokenError::BadSubject,
            ),
            (
                "overflowing sub",
                sign(
                    &serde_json::json!({"sub": "99999999999999999999", "exp": exp}),
                    SECRET,
                    Algorithm::HS256,
                ),
                TokenError::BadSubject,
            ),
        ];
        for (name, token, want) in cases {
            assert_eq!(keys.verify(&token), Err(want), "{name}");
        }
    }

    #[test]
    fn refuses_alg_none() {
        use base64_like::encode;
        let keys = TokenKeys::new(SECRET);
        let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = encode(format!(r#"{{"sub":"1","exp":{}}}"#, in_an_hour()).as_bytes());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            assert_eq!(keys.verify(&token), Err(TokenError::Invalid));
        }
    }

    #[test]
    fn refuses_critical_header_extensions() {
        let keys = TokenKeys::new(SECRET);
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["exp".into()]);
        let token = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "1", "exp": in_an_hour()}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(keys.verify(&token), Err(TokenError::Invalid));
        let plain = sign(
            &serde_json::json!({"sub": "1", "exp": in_an_hour()}),
            SECRET,
            Algorithm::HS256,
        );
        assert_eq!(keys.verify(&plain), Ok(1));
    }

    /// URL-safe base64 without padding, enough to forge an unsigned token.
    mod base64_like {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

        pub fn encode(input: &[u8]) -> String {
            let mut out = String::new();
            for chunk in input.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..=chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }
}
