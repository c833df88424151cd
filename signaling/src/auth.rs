//! Access tokens: JWTs (HS256 or EdDSA) that name a room, an identity and grants, and expire.
//!
//! A missing, malformed, forged, expired or not-yet-valid token is 401; a valid token for
//! another room, or without the grant an operation needs, is 403.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Grants {
    /// May publish media.
    #[serde(default)]
    pub publish: bool,
    /// May receive media.
    #[serde(default)]
    pub subscribe: bool,
    /// May administer the room (layouts, recording, removing participants).
    #[serde(default)]
    pub admin: bool,
}

/// An operation's need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Publishing.
    Publish,
    /// Subscribing.
    Subscribe,
    /// Administration.
    Admin,
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The participant's identity.
    pub sub: String,
    /// The room the token is for ("*" for every room: operator tokens).
    pub room: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What it allows.
    pub grants: Grants,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Not before (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Expires at (Unix seconds).
    pub exp: u64,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization: Bearer …`.
    #[error("missing bearer token")]
    Missing,
    /// Not a JWT we can read, or signed with an algorithm we do not accept.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The signature does not verify with our key.
    #[error("token signature is invalid")]
    BadSignature,
    /// Past `exp`.
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// Expiry.
        exp: u64,
        /// The time checked at.
        now: u64,
    },
    /// Before `nbf`.
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid {
        /// Not-before.
        nbf: u64,
        /// The time checked at.
        now: u64,
    },
    /// Valid, but for another room.
    #[error("token is for room \"{token_room}\", not \"{room}\"")]
    WrongRoom {
        /// The room in the token.
        token_room: String,
        /// The room asked for.
        room: String,
    },
    /// Valid, but without the grant.
    #[error("token of \"{identity}\" lacks the {need:?} grant")]
    NotAllowed {
        /// Who.
        identity: String,
        /// What was needed.
        need: Need,
    },
    /// The server has no key for this kind of token.
    #[error("no key configured for {0:?} tokens")]
    NoKey(String),
}

impl AuthError {
    /// The HTTP status this error answers with: 401 or 403.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::WrongRoom { .. } | AuthError::NotAllowed { .. } => 403,
            _ => 401,
        }
    }
}

/// Keys for checking (and, where a private key is given, minting) tokens.
#[derive(Clone, Default)]
pub struct Keys {
    hs256: Option<(EncodingKey, DecodingKey)>,
    ed_public: Option<DecodingKey>,
    ed_private: Option<EncodingKey>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("hs256", &self.hs256.is_some())
            .field("ed_public", &self.ed_public.is_some())
            .field("ed_private", &self.ed_private.is_some())
            .finish()
    }
}

/// A key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("bad {what}: {message}")]
pub struct KeyError {
    what: &'static str,
    message: String,
}

impl Keys {
    /// No keys (every token is refused).
    pub fn new() -> Keys {
        Keys::default()
    }

    /// Accepts and mints HS256 tokens with a shared secret (at least 32 bytes).
    pub fn with_hs256(mut self, secret: &[u8]) -> Result<Keys, KeyError> {
        if secret.len() < 32 {
            return Err(KeyError { what: "HS256 secret", message: format!("{} bytes; use at least 32", secret.len()) });
        }
        self.hs256 = Some((EncodingKey::from_secret(secret), DecodingKey::from_secret(secret)));
        Ok(self)
    }

    /// Accepts EdDSA tokens verified with this public key (PEM, SubjectPublicKeyInfo).
    pub fn with_ed25519_public_pem(mut self, pem: &[u8]) -> Result<Keys, KeyError> {
        self.ed_public = Some(DecodingKey::from_ed_pem(pem).map_err(|e| KeyError { what: "Ed25519 public key", message: e.to_string() })?);
        Ok(self)
    }

    /// Mints EdDSA tokens with this private key (PEM, PKCS#8).
    pub fn with_ed25519_private_pem(mut self, pem: &[u8]) -> Result<Keys, KeyError> {
        self.ed_private = Some(EncodingKey::from_ed_pem(pem).map_err(|e| KeyError { what: "Ed25519 private key", message: e.to_string() })?);
        Ok(self)
    }

    /// Signs `claims` (EdDSA when a private Ed25519 key is loaded, else HS256).
    pub fn mint(&self, claims: &Claims) -> Result<String, AuthError> {
        let (alg, key) = match (&self.ed_private, &self.hs256) {
            (Some(k), _) => (Algorithm::EdDSA, k),
            (None, Some((k, _))) => (Algorithm::HS256, k),
            (None, None) => return Err(AuthError::NoKey("any".into())),
        };
        jsonwebtoken::encode(&Header::new(alg), claims, key).map_err(|e| AuthError::Malformed(e.to_string()))
    }

    /// Checks a token for `room` and `need` at `now` (Unix seconds).
    pub fn authorize(&self, token: Option<&str>, room: &str, need: Need, now: u64) -> Result<Claims, AuthError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref().map(|(_, d)| d).ok_or_else(|| AuthError::NoKey("HS256".into()))?,
            Algorithm::EdDSA => self.ed_public.as_ref().ok_or_else(|| AuthError::NoKey("EdDSA".into()))?,
            other => return Err(AuthError::Malformed(format!("algorithm {other:?} is not accepted"))),
        };
        // Time is checked below against the caller's `now`, not the library's clock.
        let mut v = Validation::new(header.alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(token, key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => AuthError::BadSignature,
                _ => AuthError::Malformed(e.to_string()),
            })?
            .claims;
        if now >= claims.exp {
            return Err(AuthError::Expired { exp: claims.exp, now });
        }
        if let Some(nbf) = claims.nbf
            && now < nbf
        {
            return Err(AuthError::NotYetValid { nbf, now });
        }
        if claims.room != "*" && claims.room != room {
            return Err(AuthError::WrongRoom { token_room: claims.room, room: room.into() });
        }
        let g = claims.grants;
        let allowed = g.admin
            || match need {
                Need::Publish => g.publish,
                Need::Subscribe => g.subscribe,
                Need::Admin => false,
            };
        if !allowed {
            return Err(AuthError::NotAllowed { identity: claims.sub, need });
        }
        Ok(claims)
    }
}

/// The token from an `Authorization` header value (`Bearer <token>`, case-insensitive scheme).
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
