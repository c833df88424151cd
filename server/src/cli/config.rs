//! `--config FILE`: a TOML file whose keys are the long flag names (`http_listen`,
//! `max-rooms`, `ice_servers = ["stun:…"]`, `dev = true`, …). Precedence: command line, then
//! `MCU_*` environment variables, then the file, then built-in defaults. The file's values are
//! applied as the environment variables the flags already read (`max_rooms` → `MCU_MAX_ROOMS`),
//! where the environment does not set them, before the command line is parsed.

use std::path::Path;

use anyhow::Context;

/// The environment variable a config key stands for.
pub fn env_name(key: &str) -> String {
    format!("MCU_{}", key.replace('-', "_").to_ascii_uppercase())
}

/// The value as the flag's parser reads it from the environment.
fn env_value(key: &str, v: &toml::Value) -> anyhow::Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items.iter().map(|i| env_value(key, i)).collect::<anyhow::Result<Vec<_>>>()?.join(","),
        other => anyhow::bail!("config key {key:?}: a {} is not a flag value", other.type_str()),
    })
}

/// The (variable, value) pairs a config file stands for.
pub fn parse(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let table: toml::Table = text.parse().context("config is not valid TOML")?;
    table.iter().map(|(k, v)| Ok((env_name(k), env_value(k, v)?))).collect()
}

/// Reads `path` and sets the variables the environment does not set already.
pub fn apply(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
    for (name, value) in parse(&text).with_context(|| format!("in {}", path.display()))? {
        if std::env::var_os(&name).is_none() {
            // SAFETY: called from `main` before the runtime or any other thread starts.
            #[allow(unsafe_code)]
            unsafe {
                std::env::set_var(&name, value);
            }
        }
    }
    Ok(())
}

/// The `--config` value from raw arguments (`--config F` or `--config=F`), else `MCU_CONFIG`.
pub fn path_from_args(args: &[String]) -> Option<String> {
    args.iter()
        .enumerate()
        .find_map(|(i, a)| if a == "--config" { args.get(i + 1).cloned() } else { a.strip_prefix("--config=").map(str::to_string) })
        .or_else(|| std::env::var("MCU_CONFIG").ok())
}

/// A duration on the command line: `500ms`, `90s`, `30m`, `1h`, `7d`, or a number of seconds
/// (fractions allowed, e.g. `1.5s`); up to 10 years.
pub fn parse_duration(v: &str) -> Result<std::time::Duration, String> {
    let v = v.trim();
    let (num, unit) = v.find(|c: char| c.is_ascii_alphabetic()).map_or((v, "s"), |i| v.split_at(i));
    let n: f64 = num.trim().parse().map_err(|_| format!("bad duration {v:?}: use e.g. 500ms, 90s, 30m, 1h, 7d"))?;
    let unit_secs = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(format!("bad duration unit in {v:?}: ms, s, m, h or d")),
    };
    let secs = n * unit_secs;
    if !(0.0..=10.0 * 365.0 * 86_400.0).contains(&secs) {
        return Err(format!("duration {v:?} out of range"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_with_their_units() {
        use std::time::Duration;
        assert_eq!(super::parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(super::parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(super::parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(super::parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(super::parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(super::parse_duration("5y").unwrap_err().contains("unit"));
        assert!(super::parse_duration("-3s").is_err());
        assert!(super::parse_duration("abc").is_err());
    }

    use super::*;

    #[test]
    fn keys_become_the_flags_variables() {
        let vars = parse("http_listen = \"127.0.0.1:9000\"\nmax-rooms = 3\ndev = true\nice_servers = [\"stun:a:3478\", \"stun:b:3478\"]\n").unwrap();
        assert!(vars.contains(&("MCU_HTTP_LISTEN".into(), "127.0.0.1:9000".into())));
        assert!(vars.contains(&("MCU_MAX_ROOMS".into(), "3".into())));
        assert!(vars.contains(&("MCU_DEV".into(), "true".into())));
        assert!(vars.contains(&("MCU_ICE_SERVERS".into(), "stun:a:3478,stun:b:3478".into())));
        assert!(parse("[table]\nx = 1\n").is_err());
        assert!(parse("not toml at all ===").is_err());
    }

    #[test]
    fn config_path_from_arguments() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(path_from_args(&args(&["mcu", "serve", "--config", "a.toml"])), Some("a.toml".into()));
        assert_eq!(path_from_args(&args(&["mcu", "serve", "--config=b.toml"])), Some("b.toml".into()));
    }
}
