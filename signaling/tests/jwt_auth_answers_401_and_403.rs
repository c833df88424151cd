//! Access tokens: HS256 and EdDSA tokens are accepted for their room and grants; missing,
//! malformed, forged, expired and not-yet-valid tokens answer 401; another room or a missing
//! grant answers 403.

use mcu_signaling::auth::{AuthError, Claims, Grants, Keys, Need, bearer};

const NOW: u64 = 1_800_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn claims(room: &str, grants: Grants, exp: u64) -> Claims {
    Claims { sub: "alice".into(), room: room.into(), name: None, grants, iat: NOW - 10, nbf: None, exp }
}

fn publisher() -> Grants {
    Grants { publish: true, subscribe: true, admin: false }
}

fn keys_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

#[test]
fn hs256_tokens_for_the_room_pass() {
    let keys = Keys::new().with_hs256(SECRET).unwrap();
    let t = keys.mint(&claims("class-1", publisher(), NOW + 3600)).unwrap();
    let c = keys.authorize(Some(&t), "class-1", Need::Publish, NOW).unwrap();
    assert_eq!(c.sub, "alice");
    assert_eq!(keys.authorize(bearer(Some(&format!("Bearer {t}"))), "class-1", Need::Subscribe, NOW).unwrap().room, "class-1");
}

#[test]
fn eddsa_tokens_verify_with_the_public_key_only() {
    let private = std::fs::read(keys_dir().join("test_ed25519_private.pem")).unwrap();
    let public = std::fs::read(keys_dir().join("test_ed25519_public.pem")).unwrap();
    let other = std::fs::read(keys_dir().join("other_ed25519_private.pem")).unwrap();
    let minter = Keys::new().with_ed25519_private_pem(&private).unwrap();
    let checker = Keys::new().with_ed25519_public_pem(&public).unwrap();
    let t = minter.mint(&claims("r", publisher(), NOW + 60)).unwrap();
    assert!(t.starts_with("eyJ"), "a JWT");
    checker.authorize(Some(&t), "r", Need::Publish, NOW).unwrap();
    // Signed by someone else's key: forged.
    let forged = Keys::new().with_ed25519_private_pem(&other).unwrap().mint(&claims("r", publisher(), NOW + 60)).unwrap();
    assert_eq!(checker.authorize(Some(&forged), "r", Need::Publish, NOW).unwrap_err(), AuthError::BadSignature);
}

#[test]
fn bad_tokens_are_401() {
    let keys = Keys::new().with_hs256(SECRET).unwrap();
    let good = keys.mint(&claims("r", publisher(), NOW + 60)).unwrap();
    type Case = (Option<String>, fn(&AuthError) -> bool);
    let cases: Vec<Case> = vec![
        (None, |e| *e == AuthError::Missing),
        (Some(String::new()), |e| *e == AuthError::Missing),
        (Some("not.a.jwt".into()), |e| matches!(e, AuthError::Malformed(_))),
        (Some(format!("{good}x")), |e| *e == AuthError::BadSignature),
        (Some(Keys::new().with_hs256(b"another secret of thirty-two bytes!").unwrap().mint(&claims("r", publisher(), NOW + 60)).unwrap()), |e| {
            *e == AuthError::BadSignature
        }),
        (Some(keys.mint(&claims("r", publisher(), NOW - 1)).unwrap()), |e| matches!(e, AuthError::Expired { .. })),
        (Some(keys.mint(&Claims { nbf: Some(NOW + 100), ..claims("r", publisher(), NOW + 600) }).unwrap()), |e| matches!(e, AuthError::NotYetValid { .. })),
    ];
    for (token, check) in cases {
        let err = keys.authorize(token.as_deref(), "r", Need::Publish, NOW).unwrap_err();
        assert!(check(&err), "{token:?}: {err:?}");
        assert_eq!(err.status(), 401, "{err}");
    }
    // An EdDSA token where only HS256 is configured: 401, not a panic.
    let private = std::fs::read(keys_dir().join("test_ed25519_private.pem")).unwrap();
    let ed = Keys::new().with_ed25519_private_pem(&private).unwrap().mint(&claims("r", publisher(), NOW + 60)).unwrap();
    assert_eq!(keys.authorize(Some(&ed), "r", Need::Publish, NOW).unwrap_err().status(), 401);
}

#[test]
fn wrong_room_or_missing_grant_is_403() {
    let keys = Keys::new().with_hs256(SECRET).unwrap();
    let t = keys.mint(&claims("r1", Grants { subscribe: true, ..Grants::default() }, NOW + 60)).unwrap();
    let e = keys.authorize(Some(&t), "r2", Need::Subscribe, NOW).unwrap_err();
    assert_eq!((e.status(), e.to_string()), (403, "token is for room \"r1\", not \"r2\"".to_string()));
    let e = keys.authorize(Some(&t), "r1", Need::Publish, NOW).unwrap_err();
    assert_eq!(e.status(), 403);
    let admin = keys.mint(&claims("*", Grants { admin: true, ..Grants::default() }, NOW + 60)).unwrap();
    keys.authorize(Some(&admin), "any-room", Need::Admin, NOW).unwrap();
}

#[test]
fn short_secrets_and_bad_keys_are_refused() {
    assert!(Keys::new().with_hs256(b"short").is_err());
    assert!(Keys::new().with_ed25519_public_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err());
    assert_eq!(bearer(Some("Basic abc")), None);
    assert_eq!(bearer(Some("bearer  tok ")), Some("tok"));
}
