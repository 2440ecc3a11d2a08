//! ggml's RPC backend on the command line: `rbench rpc-server`, and
//! `--rpc HOST:PORT,...` / `--rpc-timeout` on the commands that place layers.
//!
//! The servers are added to ggml's device registry before anything else
//! reads it (flag checks, `--list-devices`, placement), so they are taken
//! from the arguments ahead of clap; clap declares the same flags for help
//! and validation.

use std::path::PathBuf;
use std::time::Duration;

use super::UsageError;
use crate::ggml::rpc::{self, Endpoint, RpcError};
use crate::ggml::{Device, DeviceKind};

/// `--rpc` and `--rpc-timeout` as clap declares them on those commands.
#[derive(clap::Args, Debug, Clone)]
pub struct RpcArgs {
    /// RPC servers (`rbench rpc-server` or llama.cpp's `rpc-server`) whose
    /// devices join the device list as RPC0, RPC1, ... (`--rpc`, `-rpc`):
    /// `-ngl`, `-ts` and `-dev` place layers on them as on local GPUs.
    #[arg(long = "rpc", value_name = "HOST:PORT[,HOST:PORT]")]
    pub rpc: Option<String>,
    /// Seconds one call may wait on an RPC server before the run ends with
    /// an error naming it; 0 waits for ever.
    #[arg(long = "rpc-timeout", value_name = "SECONDS", value_parser = timeout_secs, default_value_t = rpc::DEFAULT_TIMEOUT.as_secs_f64())]
    pub rpc_timeout: f64,
}

/// `--rpc-timeout`'s seconds, checked (clap's parser for the flag too).
fn timeout_secs(s: &str) -> Result<f64, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("expected 0 (no limit) or more seconds, got {s}"));
    }
    Ok(secs)
}

/// `--rpc-timeout`'s value: `None` for no limit.
fn parse_timeout(s: &str) -> Result<Option<Duration>, UsageError> {
    let secs = timeout_secs(s).map_err(|e| UsageError(format!("--rpc-timeout: {e}")))?;
    Ok((secs > 0.0).then(|| Duration::from_secs_f64(secs)))
}

/// The value of `--flag VALUE` / `--flag=VALUE` among a command's words
/// (before any `--`); the last one wins, as with clap.
fn flag_value<'a>(words: &[&'a str], flag: &str) -> Option<&'a str> {
    let mut found = None;
    let mut i = 0;
    while i < words.len() && words[i] != "--" {
        if words[i] == flag {
            found = words.get(i + 1).copied();
            i += 1;
        } else if let Some(v) = words[i]
            .strip_prefix(flag)
            .and_then(|r| r.strip_prefix('='))
        {
            found = Some(v);
        }
        i += 1;
    }
    found
}

/// Adds the servers named by `--rpc` (if the command takes it) to ggml's
/// registry. Bad values are usage errors; unreachable servers, runtime ones.
pub fn connect_from_argv(argv: &[std::ffi::OsString]) -> anyhow::Result<()> {
    let Some((command, args)) = super::command_words(argv) else {
        return Ok(());
    };
    if !super::PLACING.contains(&command) {
        return Ok(());
    }
    let Some(list) = flag_value(&args, "--rpc") else {
        return Ok(());
    };
    let timeout = match flag_value(&args, "--rpc-timeout") {
        Some(s) => parse_timeout(s)?,
        None => Some(rpc::DEFAULT_TIMEOUT),
    };
    let endpoints = Endpoint::parse_list(list).map_err(|e| match e {
        e @ (RpcError::BadEndpoint(_) | RpcError::Ipv6(_)) => {
            anyhow::Error::from(UsageError(format!("--rpc: {e}")))
        }
        e => e.into(),
    })?;
    let devices = rpc::add_servers(&endpoints, timeout)?;
    if devices.is_empty() {
        anyhow::bail!("--rpc: the servers offer no device");
    }
    Ok(())
}

/// `rbench rpc-server`.
#[derive(clap::Args, Debug)]
pub struct RpcServerArgs {
    /// Address to listen on. ggml's RPC protocol has no authentication:
    /// anyone who can reach the port can use the device and read what it
    /// holds, so listen beyond loopback only on a trusted network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on.
    #[arg(short = 'p', long, default_value_t = rpc::DEFAULT_PORT)]
    pub port: u16,
    /// Threads of the served CPU backend [default: logical cores].
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// The device to serve, a name from `--list-devices` [default: CPU].
    #[arg(long = "device", value_name = "NAME")]
    pub device: Option<String>,
    /// Keep large tensors a client sends in this directory, so reloading the
    /// same model sends their hashes instead of their bytes.
    #[arg(long = "cache", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// List the devices that could be served and exit.
    #[arg(long = "list-devices")]
    pub list_devices: bool,
}

pub fn run_server(args: RpcServerArgs) -> anyhow::Result<()> {
    if args.list_devices {
        return super::placement_args::print_devices();
    }
    super::check_threads(args.threads)?;
    let endpoint = Endpoint::parse(&format!("{}:{}", args.host, args.port))
        .map_err(|e| UsageError(format!("--host/--port: {e}")))?;
    let device = match &args.device {
        None => Device::cpu().ok_or_else(|| anyhow::anyhow!("ggml has no CPU device"))?,
        Some(name) => Device::by_name(name).ok_or_else(|| {
            UsageError(format!(
                "--device: unknown device '{name}' (devices here: {}; see --list-devices)",
                crate::model::placement::device_list()
            ))
        })?,
    };
    if device.backend_name() == "RPC" {
        return Err(UsageError("--device: an RPC device cannot be served again".into()).into());
    }
    if let Some(dir) = &args.cache {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("--cache {}: {e}", dir.display()))?;
    }
    if !endpoint.is_loopback() {
        eprintln!(
            "warning: listening on {endpoint}: ggml's RPC protocol has no authentication or \
             encryption; anyone who can reach this port can run work on {} and read its memory. \
             Use it only on a trusted network.",
            device.name()
        );
    }
    let threads = args
        .threads
        .unwrap_or_else(crate::engine::context::default_threads);
    // ggml's accept loop never returns to check the Ctrl-C flag; a thread does.
    std::thread::spawn(|| loop {
        std::thread::sleep(Duration::from_millis(100));
        if super::interrupt::requested() {
            eprintln!("rpc-server: stopped by Ctrl-C");
            std::process::exit(super::interrupt::EXIT_INTERRUPTED);
        }
    });
    let kind = if device.kind() == DeviceKind::Cpu {
        format!("{threads} thread{}", if threads == 1 { "" } else { "s" })
    } else {
        device.description()
    };
    eprintln!(
        "rpc-server: serving {} ({kind}) on {endpoint}; Ctrl-C stops it",
        device.name()
    );
    rpc::serve(&endpoint, device, threads, args.cache.as_deref())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_found_before_the_double_dash() {
        let w = [
            "-m",
            "x",
            "--rpc",
            "a:1,b:2",
            "--rpc-timeout=5",
            "--",
            "--rpc",
            "c:3",
        ];
        assert_eq!(flag_value(&w, "--rpc"), Some("a:1,b:2"));
        assert_eq!(flag_value(&w, "--rpc-timeout"), Some("5"));
        assert_eq!(
            flag_value(&["--rpc=a:1", "--rpc", "b:2"], "--rpc"),
            Some("b:2")
        );
        assert_eq!(flag_value(&["--rpc-timeout", "3"], "--rpc"), None);
    }

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("0").unwrap(), None);
        assert_eq!(
            parse_timeout("1.5").unwrap(),
            Some(Duration::from_millis(1500))
        );
        for bad in ["-1", "x", "inf"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_without_rpc_are_left_alone() {
        let argv: Vec<std::ffi::OsString> = ["rbench", "info", "--rpc", "nonsense"]
            .iter()
            .map(Into::into)
            .collect();
        assert!(connect_from_argv(&argv).is_ok());
        let argv: Vec<std::ffi::OsString> = ["rbench", "bench", "--rpc", "nonsense"]
            .iter()
            .map(Into::into)
            .collect();
        let err = connect_from_argv(&argv).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
    }
}
