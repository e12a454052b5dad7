//! Loading the node's [`Config`]: the TOML file, then `HEARTH_*` environment
//! overrides, then `--set KEY=VALUE` flags, then [`Config::validate`]. Every error names what to fix: the
//! key and the file, or the environment variable.

use std::path::Path;

use anyhow::Context;

use crate::core::Config;

/// An environment variable that overrides one config key.
#[derive(Debug, Clone, Copy)]
pub struct EnvOverride {
    pub var: &'static str,
    pub key: &'static str,
    /// Sets the key from the variable's text; `Err` says what was expected.
    set: fn(&mut Config, &str) -> Result<(), &'static str>,
}

fn whole_number(v: &str) -> Result<u64, &'static str> {
    v.trim().parse().map_err(|_| "a whole number")
}

fn boolean(v: &str) -> Result<bool, &'static str> {
    match v.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("true or false"),
    }
}

/// Every override, applied in this order after the file is read.
pub const ENV_OVERRIDES: [EnvOverride; 7] = [
    EnvOverride {
        var: "HEARTH_MARKET_ENABLED",
        key: "market.enabled",
        set: |c, v| {
            c.market.enabled = boolean(v)?;
            Ok(())
        },
    },
    EnvOverride {
        var: "HEARTH_MARKET_DEFAULT_TTL_SECONDS",
        key: "market.default_ttl_seconds",
        set: |c, v| {
            c.market.default_ttl_seconds = whole_number(v)?;
            Ok(())
        },
    },
    EnvOverride {
        var: "HEARTH_MARKET_MAX_TTL_SECONDS",
        key: "market.max_ttl_seconds",
        set: |c, v| {
            c.market.max_ttl_seconds = whole_number(v)?;
            Ok(())
        },
    },
    EnvOverride {
        var: "HEARTH_MARKET_SWEEP_INTERVAL_SECONDS",
        key: "market.sweep_interval_seconds",
        set: |c, v| {
            c.market.sweep_interval_seconds = whole_number(v)?;
            Ok(())
        },
    },
    EnvOverride {
        var: "HEARTH_SNAPSHOT_EVERY_EVENTS",
        key: "snapshot_every_events",
        set: |c, v| {
            c.snapshot_every_events = whole_number(v)?;
            Ok(())
        },
    },
    EnvOverride {
        var: "HEARTH_API_LISTEN",
        key: "api.listen",
        set: |c, v| {
            let v = v.trim();
            v.parse::<std::net::SocketAddr>()
                .map_err(|_| "an address IP:PORT such as 127.0.0.1:7878")?;
            c.api.listen = Some(v.to_owned());
            Ok(())
        },
    },
    EnvOverride {
        var: "HEARTH_API_HEALTH_NO_PEERS_S",
        key: "api.health_no_peers_s",
        set: |c, v| {
            c.api.health_no_peers_s = whole_number(v)?;
            Ok(())
        },
    },
];

/// Loads the configuration. `path` is read if it exists; if `required` (the
/// user named it with `--config`) a missing file is an error. `env` looks up
/// environment variables (a parameter so tests need not touch the process
/// environment).
pub fn load(
    path: &Path,
    required: bool,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Config> {
    let mut config = match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Config::default(),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read config file {}", path.display()))
        }
    };
    apply_env(&mut config, env)?;
    config.validate().with_context(|| {
        format!(
            "invalid configuration (from {} and HEARTH_* environment variables)",
            path.display()
        )
    })?;
    Ok(config)
}

/// Parses TOML, reporting `file:line:column: message` (the message names
/// an unknown key, with the keys that are allowed).
fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
    toml::from_str(text).map_err(|e| {
        let place = match e.span() {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("{}:{line}:{column}", path.display())
            }
            None => path.display().to_string(),
        };
        anyhow::anyhow!("config file {place}: {}", e.message().trim_end())
    })
}

/// Applies `--set KEY=VALUE` flags (the same keys and parsers as the
/// environment overrides), then validates again.
pub fn apply_flags(config: &mut Config, sets: &[String]) -> anyhow::Result<()> {
    for set in sets {
        let (key, value) = set
            .split_once('=')
            .with_context(|| format!("--set {set:?}: expected KEY=VALUE"))?;
        let o = ENV_OVERRIDES
            .iter()
            .find(|o| o.key == key.trim())
            .with_context(|| {
                let keys: Vec<&str> = ENV_OVERRIDES.iter().map(|o| o.key).collect();
                format!(
                    "--set {set:?}: unknown key {key:?} (one of {})",
                    keys.join(", ")
                )
            })?;
        (o.set)(config, value)
            .map_err(|expected| anyhow::anyhow!("--set {set:?}: {} expects {expected}", o.key))?;
    }
    config
        .validate()
        .context("invalid configuration after --set flags")?;
    Ok(())
}

fn apply_env(config: &mut Config, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    for o in ENV_OVERRIDES {
        if let Some(v) = env(o.var) {
            (o.set)(config, &v).map_err(|expected| {
                anyhow::anyhow!(
                    "environment variable {}={v:?} (overrides {}): expected {expected}",
                    o.var,
                    o.key
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_flag_overrides_and_names_bad_input() {
        let mut c = Config::default();
        apply_flags(
            &mut c,
            &[
                "market.enabled=false".into(),
                "market.default_ttl_seconds=60".into(),
            ],
        )
        .unwrap();
        assert!(!c.market.enabled);
        assert_eq!(c.market.default_ttl_seconds, 60);
        let err = format!(
            "{:#}",
            apply_flags(&mut c, &["market.colour=red".into()]).unwrap_err()
        );
        assert!(
            err.contains("unknown key") && err.contains("market.enabled"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            apply_flags(&mut c, &["market.enabled=maybe".into()]).unwrap_err()
        );
        assert!(err.contains("true or false"), "{err}");
        let err = format!(
            "{:#}",
            apply_flags(&mut c, &["market.sweep_interval_seconds=0".into()]).unwrap_err()
        );
        assert!(err.contains("market.sweep_interval_seconds"), "{err}");
        assert!(apply_flags(&mut c, &["no-equals".into()]).is_err());
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    /// A missing default file gives the defaults; a missing `--config` file is an error.
    #[test]
    fn missing_file_is_default_unless_required() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(load(&path, false, no_env).unwrap(), Config::default());
        let err = format!("{:#}", load(&path, true, no_env).unwrap_err());
        assert!(err.contains("config.toml"), "{err}");
    }

    /// An unknown key is named, with the file and line where it stands.
    #[test]
    fn unknown_key_names_key_and_file() {
        let (_dir, path) = write("[market]\nenabled = true\nsweep_secs = 5\n");
        let err = format!("{:#}", load(&path, false, no_env).unwrap_err());
        assert!(err.contains("sweep_secs"), "{err}");
        assert!(err.contains(&format!("{}:3:", path.display())), "{err}");
    }

    /// File values are read, and an environment variable wins over the file.
    #[test]
    fn env_override_wins_over_file() {
        let (_dir, path) = write("[market]\ndefault_ttl_seconds = 3600\nenabled = true\n");
        let config = load(&path, false, no_env).unwrap();
        assert_eq!(config.market.default_ttl_seconds, 3600);
        let env = |k: &str| match k {
            "HEARTH_MARKET_DEFAULT_TTL_SECONDS" => Some("60".to_owned()),
            "HEARTH_MARKET_ENABLED" => Some("false".to_owned()),
            _ => None,
        };
        let config = load(&path, false, env).unwrap();
        assert_eq!(config.market.default_ttl_seconds, 60);
        assert!(!config.market.enabled);
    }

    /// A value that is not a number or a boolean names its variable.
    #[test]
    fn bad_env_value_names_the_variable() {
        let (_dir, path) = write("");
        for o in ENV_OVERRIDES {
            let env = |k: &str| (k == o.var).then(|| "lots".to_owned());
            let err = format!("{:#}", load(&path, false, env).unwrap_err());
            assert!(err.contains(o.var), "{err}");
        }
    }

    /// `api.listen` is read from the file, `HEARTH_API_LISTEN` wins over
    /// it, and a value that is not IP:PORT names the variable and the form.
    #[test]
    fn api_listen_from_file_and_env() {
        let (_dir, path) = write("[api]\nlisten = \"127.0.0.1:9000\"\n");
        let c = load(&path, false, no_env).unwrap();
        assert_eq!(c.api.listen.as_deref(), Some("127.0.0.1:9000"));
        let env = |k: &str| (k == "HEARTH_API_LISTEN").then(|| "127.0.0.1:9001".to_owned());
        let c = load(&path, false, env).unwrap();
        assert_eq!(c.api.listen.as_deref(), Some("127.0.0.1:9001"));
        let env = |k: &str| (k == "HEARTH_API_LISTEN").then(|| "localhost".to_owned());
        let err = format!("{:#}", load(&path, false, env).unwrap_err());
        assert!(
            err.contains("HEARTH_API_LISTEN") && err.contains("IP:PORT"),
            "{err}"
        );
    }

    /// `api.health_no_peers_s` is read from the file and
    /// `HEARTH_API_HEALTH_NO_PEERS_S` wins over it.
    #[test]
    fn api_health_window_from_file_and_env() {
        let (_dir, path) = write("[api]\nhealth_no_peers_s = 60\n");
        assert_eq!(
            load(&path, false, no_env).unwrap().api.health_no_peers_s,
            60
        );
        let env = |k: &str| (k == "HEARTH_API_HEALTH_NO_PEERS_S").then(|| "5".to_owned());
        assert_eq!(load(&path, false, env).unwrap().api.health_no_peers_s, 5);
    }

    /// Values that parse but break a rule are named by their config key.
    #[test]
    fn validation_names_the_key() {
        let (_dir, path) = write("[market]\nsweep_interval_seconds = 0\n");
        let err = format!("{:#}", load(&path, false, no_env).unwrap_err());
        assert!(err.contains("market.sweep_interval_seconds"), "{err}");
    }
}
