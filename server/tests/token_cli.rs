//! `mcu token` mints a JWT that the server's auth accepts for its room and grants, and refuses
//! to run without a key.
#![allow(clippy::disallowed_methods)] // checks a token minted against the real clock

use std::process::Command;

use mcu_signaling::auth::{Keys, Need};

const SECRET: &str = "a-test-secret-that-is-32-bytes-long!";

#[test]
fn minted_tokens_carry_room_identity_grants_and_expiry() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcu"))
        .args(["token", "--room", "class-7", "--identity", "teacher", "--publish", "--subscribe", "--ttl", "2h"])
        .env("MCU_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let keys = Keys::new().with_hs256(SECRET.as_bytes()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = keys.authorize(Some(&token), "class-7", Need::Publish, now).unwrap();
    assert_eq!(claims.sub, "teacher");
    assert!((claims.exp - claims.iat) == 7200);
    assert_eq!(keys.authorize(Some(&token), "class-7", Need::Admin, now).unwrap_err().status(), 403);
    assert_eq!(keys.authorize(Some(&token), "class-8", Need::Subscribe, now).unwrap_err().status(), 403);
    assert_eq!(keys.authorize(Some(&token), "class-7", Need::Subscribe, claims.exp).unwrap_err().status(), 401);
}

#[test]
fn no_key_or_a_bad_ttl_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcu")).args(["token", "--room", "r", "--identity", "x"]).env_remove("MCU_JWT_SECRET").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no signing key"));
    let out = Command::new(env!("CARGO_BIN_EXE_mcu"))
        .args(["token", "--room", "r", "--identity", "x", "--ttl", "5y"])
        .env("MCU_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("duration unit"));
}
