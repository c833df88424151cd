//! `mcu token`: mints an access token with the server's configured key.

use std::{path::PathBuf, time::SystemTime};

use anyhow::Context;
use mcu_signaling::auth::{Claims, Grants, Keys};

/// Options of `mcu token`.
#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    /// The room ("*" for every room).
    #[arg(long)]
    pub room: String,
    /// The participant's identity.
    #[arg(long)]
    pub identity: String,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Allow publishing.
    #[arg(long)]
    pub publish: bool,
    /// Allow subscribing.
    #[arg(long)]
    pub subscribe: bool,
    /// Allow administration.
    #[arg(long)]
    pub admin: bool,
    /// Lifetime: e.g. 90s, 30m, 1h, 7d (a bare number is seconds).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: u64,
    /// HS256 shared secret (at least 32 bytes).
    #[arg(long, env = "MCU_JWT_SECRET", hide_env_values = true)]
    pub hs256_secret: Option<String>,
    /// Ed25519 private key (PKCS#8 PEM) for EdDSA tokens; preferred over the secret.
    #[arg(long, env = "MCU_JWT_ED25519_PRIVATE_KEY")]
    pub ed25519_private_key: Option<PathBuf>,
}

fn parse_ttl(s: &str) -> Result<u64, String> {
    Some(crate::cli::config::parse_duration(s)?.as_secs()).filter(|v| *v > 0).ok_or_else(|| format!("duration {s:?} is under a second"))
}

pub fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let mut keys = Keys::new();
    if let Some(path) = &args.ed25519_private_key {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        keys = keys.with_ed25519_private_pem(&pem)?;
    } else if let Some(secret) = &args.hs256_secret {
        keys = keys.with_hs256(secret.as_bytes())?;
    } else {
        anyhow::bail!("no signing key: set --hs256-secret / MCU_JWT_SECRET or --ed25519-private-key");
    }
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).context("clock before 1970")?.as_secs();
    let claims = Claims {
        sub: args.identity.clone(),
        room: args.room.clone(),
        name: args.name.clone(),
        grants: Grants { publish: args.publish, subscribe: args.subscribe, admin: args.admin },
        iat: now,
        nbf: None,
        exp: now + args.ttl,
    };
    println!("{}", keys.mint(&claims)?);
    Ok(())
}
