//! Facts about this build, recorded by `build.rs`.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct BuildInfo {
    pub rbench_version: &'static str,
    pub git_commit: &'static str,
    pub ggml_version: &'static str,
    pub target: &'static str,
    pub target_features: Vec<&'static str>,
    pub profile: &'static str,
}

pub fn build_info() -> BuildInfo {
    BuildInfo {
        rbench_version: env!("CARGO_PKG_VERSION"),
        git_commit: env!("RBENCH_GIT_COMMIT"),
        ggml_version: env!("RBENCH_GGML_VERSION"),
        target: env!("RBENCH_TARGET"),
        target_features: env!("RBENCH_TARGET_FEATURES")
            .split(',')
            .filter(|s| !s.is_empty())
            .collect(),
        profile: env!("RBENCH_PROFILE"),
    }
}

/// The text of `rbench --version`: version, commit, ggml, target, profile, CPU features.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RBENCH_GIT_COMMIT"),
    ", ggml ",
    env!("RBENCH_GGML_VERSION"),
    ", ",
    env!("RBENCH_TARGET"),
    ", ",
    env!("RBENCH_PROFILE"),
    " build, target features: ",
    env!("RBENCH_TARGET_FEATURES"),
    ")"
);
