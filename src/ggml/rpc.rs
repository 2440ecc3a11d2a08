//! ggml's RPC backend: another machine's devices used like local GPUs
//! (the client side, [`add_servers`]), and this machine's device served to
//! others ([`serve`]). Both are reached through the backend registry
//! (`ggml_backend_reg_by_name("RPC")` and its proc addresses), so nothing
//! beyond ggml-backend.h needs binding.
//!
//! ggml aborts the process when a server fails during a call. rbench turns
//! that into one error line naming the endpoint and exit code 1 (an abort
//! callback), and a watchdog ends a call that waits on a server longer than
//! the time-out the same way, so a stopped server never hangs a run. Every
//! wrapper call that can talk to a server ([`call_guard`]) arms the watchdog.

use std::ffi::{c_char, CStr, CString};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::backend::Device;
use super::runtime::ensure_init;
use super::sys;

/// llama.cpp's `rpc-server` port.
pub const DEFAULT_PORT: u16 = 50052;
/// How long one call may wait on a server before the run ends.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The protocol version the bundled ggml speaks (ggml-rpc.h: RPC_PROTO_*).
pub const PROTOCOL: &str = "7.0.0";
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What can go wrong before a run starts.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("RPC endpoint '{0}': expected HOST:PORT, e.g. 192.168.1.20:50052")]
    BadEndpoint(String),
    #[error("RPC endpoint '{0}': ggml's RPC transport speaks IPv4 only")]
    Ipv6(String),
    #[error("RPC server {endpoint}: cannot connect: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("RPC server {0} offers no device")]
    NoDevices(String),
    #[error("this rbench was built without ggml's RPC backend (build with GGML_RPC=ON, as .cargo/config.toml does)")]
    NotBuilt,
    #[error("rpc-server on {endpoint}: {reason}")]
    Serve { endpoint: String, reason: String },
}

/// `HOST:PORT` of an RPC server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(s: &str) -> Result<Endpoint, RpcError> {
        let s = s.trim();
        if s.starts_with('[') || s.matches(':').count() > 1 {
            return Err(RpcError::Ipv6(s.to_string()));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| RpcError::BadEndpoint(s.to_string()))?;
        let port: u16 = port
            .parse()
            .map_err(|_| RpcError::BadEndpoint(s.to_string()))?;
        if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
            return Err(RpcError::BadEndpoint(s.to_string()));
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }

    /// A comma-separated list (`--rpc a:1,b:2`), duplicates refused.
    pub fn parse_list(s: &str) -> Result<Vec<Endpoint>, RpcError> {
        let mut out: Vec<Endpoint> = Vec::new();
        for part in s.split(',') {
            let e = Endpoint::parse(part)?;
            if out.contains(&e) {
                return Err(RpcError::BadEndpoint(format!("{e} (given twice)")));
            }
            out.push(e);
        }
        Ok(out)
    }

    /// Its IPv4 address (ggml's transport resolves IPv4 only too).
    fn resolve(&self) -> Result<SocketAddr, RpcError> {
        let unreachable = |reason: String| RpcError::Unreachable {
            endpoint: self.to_string(),
            reason,
        };
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| unreachable(format!("cannot resolve '{}': {e}", self.host)))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| unreachable(format!("'{}' has no IPv4 address", self.host)))
    }

    /// Whether the host is this machine's loopback.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The servers this process uses, for the failure report.
struct Client {
    servers: Vec<(Endpoint, SocketAddr)>,
    timeout: Option<Duration>,
}

static CLIENT: Mutex<Client> = Mutex::new(Client {
    servers: Vec::new(),
    timeout: None,
});
/// Whether any server was added: guards are free until then.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Calls in flight (nested guards count once) and when the outermost began,
/// in ms since [`epoch`].
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static SINCE_MS: AtomicU64 = AtomicU64::new(0);
static WATCHDOG: OnceLock<()> = OnceLock::new();

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// Marks a call that may wait on an RPC server; the watchdog ends the run
/// if it lasts longer than the time-out. Free when no server was added.
pub(crate) struct CallGuard(());

pub(crate) fn call_guard() -> Option<CallGuard> {
    if !ACTIVE.load(Ordering::Relaxed) {
        return None;
    }
    // The start time is stored before the count rises, so the watchdog never
    // sees a call in flight with the previous call's start time.
    if IN_FLIGHT.load(Ordering::SeqCst) == 0 {
        SINCE_MS.store(now_ms(), Ordering::SeqCst);
    }
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    Some(CallGuard(()))
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

fn start_watchdog() {
    WATCHDOG.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("rpc-watchdog".into())
            .spawn(|| loop {
                std::thread::sleep(Duration::from_millis(100));
                remember_sockets();
                let timeout = CLIENT.lock().map(|c| c.timeout).unwrap_or(None);
                let Some(timeout) = timeout else { continue };
                if IN_FLIGHT.load(Ordering::SeqCst) == 0 {
                    continue;
                }
                let waited = now_ms().saturating_sub(SINCE_MS.load(Ordering::SeqCst));
                if waited > timeout.as_millis() as u64 && IN_FLIGHT.load(Ordering::SeqCst) > 0 {
                    fail(&format!(
                        "no answer within the {} s time-out (--rpc-timeout); stopped, overloaded, or serving another client (one at a time)",
                        timeout.as_secs_f64()
                    ));
                }
            });
        if let Err(e) = spawned {
            eprintln!("warning: no RPC time-out watchdog: {e}");
        }
    });
}

/// Names the server that failed, prints one error line and exits 1.
/// Runs on whichever thread noticed (ggml's dispatcher, or the watchdog).
fn fail(what: &str) -> ! {
    let servers = CLIENT.lock().map(|c| c.servers.clone()).unwrap_or_default();
    let named = servers.iter().find(|(e, _)| what.contains(&e.to_string()));
    let line = if let Some((e, _)) = named.filter(|_| what.contains("handshake")) {
        format!(
            "RPC server {e}: {what}: it speaks another version of ggml's RPC protocol (this rbench's is {PROTOCOL})"
        )
    } else if let Some(e) = closed_by_peer(&servers) {
        format!(
            "RPC server {e} went away (it closed the connection); the run cannot go on without it"
        )
    } else if let Some((e, _)) = named {
        format!("RPC server {e}: {what}")
    } else if let Some(e) = waiting_on(&servers) {
        format!("RPC server {e} stopped answering: {what}")
    } else {
        // Without the kernel's view of our sockets: try a new connection.
        let mut gone = Vec::new();
        let mut busy = Vec::new();
        for (endpoint, addr) in &servers {
            match TcpStream::connect_timeout(addr, Duration::from_secs(2)) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    busy.push(endpoint.to_string())
                }
                Err(e) => gone.push(format!("{endpoint} ({e})")),
            }
        }
        let all: Vec<String> = servers.iter().map(|(e, _)| e.to_string()).collect();
        if !gone.is_empty() {
            format!(
                "RPC server {} went away; the run cannot go on without it",
                gone.join(", ")
            )
        } else if !busy.is_empty() {
            format!(
                "RPC server {} does not take connections: {what}",
                busy.join(", ")
            )
        } else {
            format!(
                "an RPC server ({}) stopped answering: {what}",
                all.join(", ")
            )
        }
    };
    eprintln!("error: {line}");
    // SAFETY: `_exit` ends the process without running atexit handlers or
    // destructors, which could block on locks ggml's other threads hold.
    unsafe { libc::_exit(1) }
}

/// This process's sockets to the servers (descriptor, server), as last
/// seen connected: once a peer resets a socket the kernel no longer says
/// who the peer was.
#[cfg(target_os = "linux")]
static SOCKETS: Mutex<Vec<(i32, Endpoint)>> = Mutex::new(Vec::new());

/// Linux TCP states (include/net/tcp_states.h) after the peer closed.
#[cfg(target_os = "linux")]
const PEER_CLOSED_STATES: [u8; 3] = [
    7, /* CLOSE */
    8, /* CLOSE_WAIT */
    9, /* LAST_ACK */
];

/// Every open socket of this process to one of `servers`, with the
/// kernel's `tcp_info` for it.
#[cfg(target_os = "linux")]
fn server_sockets(servers: &[(Endpoint, SocketAddr)]) -> Vec<(i32, Endpoint, libc::tcp_info)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|fd| {
            let peer = tcp_peer(fd)?;
            let (endpoint, _) = servers.iter().find(|(_, a)| *a == peer)?;
            Some((fd, endpoint.clone(), tcp_info(fd)?))
        })
        .collect()
}

#[cfg(target_os = "linux")]
fn remember_sockets() {
    let servers = CLIENT.lock().map(|c| c.servers.clone()).unwrap_or_default();
    let seen = server_sockets(&servers);
    if let Ok(mut known) = SOCKETS.lock() {
        for (fd, endpoint, _) in seen {
            known.retain(|(f, _)| *f != fd);
            known.push((fd, endpoint));
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn remember_sockets() {}

/// A server whose end of our connection is closed (it exited or was killed).
#[cfg(target_os = "linux")]
fn closed_by_peer(servers: &[(Endpoint, SocketAddr)]) -> Option<Endpoint> {
    remember_sockets();
    let known = SOCKETS.lock().map(|k| k.clone()).unwrap_or_default();
    known.into_iter().find_map(|(fd, endpoint)| {
        let info = tcp_info(fd)?;
        // The descriptor may since have been reused for another peer.
        let still_ours =
            tcp_peer(fd).is_none_or(|p| servers.iter().any(|(e, a)| *e == endpoint && *a == p));
        (still_ours && PEER_CLOSED_STATES.contains(&info.tcpi_state)).then_some(endpoint)
    })
}

#[cfg(not(target_os = "linux"))]
fn closed_by_peer(_servers: &[(Endpoint, SocketAddr)]) -> Option<Endpoint> {
    None
}

/// The server this process sent a request to and has not heard from since,
/// longest first (Linux: the kernel's per-socket last send/receive times).
#[cfg(target_os = "linux")]
fn waiting_on(servers: &[(Endpoint, SocketAddr)]) -> Option<Endpoint> {
    server_sockets(servers)
        .into_iter()
        // Sent more recently than anything came back: a request is open.
        .filter(|(_, _, info)| info.tcpi_last_data_sent < info.tcpi_last_data_recv)
        .max_by_key(|(_, _, info)| info.tcpi_last_data_recv)
        .map(|(_, endpoint, _)| endpoint)
}

#[cfg(not(target_os = "linux"))]
fn waiting_on(_servers: &[(Endpoint, SocketAddr)]) -> Option<Endpoint> {
    None
}

/// The IPv4 peer of a connected socket (`None` for anything else).
#[cfg(target_os = "linux")]
fn tcp_peer(fd: i32) -> Option<SocketAddr> {
    // SAFETY: all-zero bytes are a valid sockaddr_in.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `addr` has room for `len` bytes; getpeername on a descriptor
    // that is not a connected socket just fails.
    let rc =
        unsafe { libc::getpeername(fd, (&mut addr as *mut libc::sockaddr_in).cast(), &mut len) };
    if rc != 0 || addr.sin_family != libc::AF_INET as libc::sa_family_t {
        return None;
    }
    Some(SocketAddr::from((
        std::net::Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    )))
}

/// The kernel's `tcp_info` of a TCP socket (`None` for anything else).
#[cfg(target_os = "linux")]
fn tcp_info(fd: i32) -> Option<libc::tcp_info> {
    // SAFETY: all-zero bytes are a valid tcp_info.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` has room for `len` bytes; the kernel writes at most
    // that, and fails on a descriptor that is not a TCP socket.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(info)
}

/// ggml's abort hook: an RPC failure becomes [`fail`]; anything else is
/// printed and ggml aborts as it would have.
unsafe extern "C" fn on_ggml_abort(message: *const c_char) {
    let text = if message.is_null() {
        String::new()
    } else {
        // SAFETY: ggml passes a NUL-terminated message valid for this call.
        unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned()
    };
    let about_a_server =
        text.contains("RPC") || servers().iter().any(|e| text.contains(&e.to_string()));
    if about_a_server {
        // Without ggml's "file:line: " prefix.
        fail(text.rsplit(": ").next().unwrap_or(&text).trim());
    }
    eprintln!("{text}");
}

fn rpc_reg() -> Result<sys::ggml_backend_reg_t, RpcError> {
    ensure_init();
    let name = CString::new("RPC").expect("no NUL");
    // SAFETY: reads the static registry with a NUL-terminated name.
    let reg = unsafe { sys::ggml_backend_reg_by_name(name.as_ptr()) };
    if reg.is_null() {
        Err(RpcError::NotBuilt)
    } else {
        Ok(reg)
    }
}

fn proc_address(
    reg: sys::ggml_backend_reg_t,
    name: &str,
) -> Result<*mut std::ffi::c_void, RpcError> {
    let c = CString::new(name).expect("no NUL");
    // SAFETY: `reg` is the live RPC registry entry; the name is NUL-terminated.
    let f = unsafe { sys::ggml_backend_reg_get_proc_address(reg, c.as_ptr()) };
    if f.is_null() {
        Err(RpcError::NotBuilt)
    } else {
        Ok(f)
    }
}

type AddServerFn = unsafe extern "C" fn(*const c_char) -> sys::ggml_backend_reg_t;
type StartServerFn =
    unsafe extern "C" fn(*const c_char, *const c_char, usize, usize, *mut sys::ggml_backend_dev_t);

/// Connects to each server and adds its devices to ggml's registry, where
/// placement finds them like local GPUs ("RPC0", "RPC1", ...; description:
/// the endpoint). Adding a server twice adds it once. `timeout` bounds every
/// later call to a server (`None`: wait for ever).
pub fn add_servers(
    endpoints: &[Endpoint],
    timeout: Option<Duration>,
) -> Result<Vec<Device>, RpcError> {
    let reg = rpc_reg()?;
    // SAFETY: ggml documents this entry point under this name and signature
    // (ggml-rpc.h: ggml_backend_reg_t ggml_backend_rpc_add_server(const char *)).
    let add_server: AddServerFn =
        unsafe { std::mem::transmute(proc_address(reg, "ggml_backend_rpc_add_server")?) };
    let mut added = Vec::new();
    for endpoint in endpoints {
        let addr = endpoint.resolve()?;
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| RpcError::Unreachable {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?;
        {
            let mut client = CLIENT.lock().unwrap_or_else(|p| p.into_inner());
            client.timeout = timeout;
            if client.servers.iter().any(|(e, _)| e == endpoint) {
                continue;
            }
            client.servers.push((endpoint.clone(), addr));
        }
        // SAFETY: `on_ggml_abort` is an `extern "C"` function living for the
        // whole process.
        unsafe { sys::ggml_set_abort_callback(Some(on_ggml_abort)) };
        ACTIVE.store(true, Ordering::SeqCst);
        start_watchdog();
        let c = CString::new(endpoint.to_string())
            .map_err(|_| RpcError::BadEndpoint(endpoint.to_string()))?;
        let server_reg = {
            let _guard = call_guard();
            // SAFETY: a NUL-terminated endpoint; ggml keeps its own copy.
            unsafe { add_server(c.as_ptr()) }
        };
        if server_reg.is_null() {
            return Err(RpcError::NoDevices(endpoint.to_string()));
        }
        // SAFETY: `server_reg` is the registry entry ggml just made for the
        // endpoint (it lives for the process); registering it once makes its
        // devices part of the device list.
        unsafe { sys::ggml_backend_register(server_reg) };
        // SAFETY: as above; indices below the entry's own device count.
        let n = unsafe { sys::ggml_backend_reg_dev_count(server_reg) };
        for i in 0..n {
            // SAFETY: `i` < the entry's device count; devices live for the process.
            let raw = unsafe { sys::ggml_backend_reg_dev_get(server_reg, i) };
            // SAFETY: null or a device of the registry.
            if let Some(d) = unsafe { Device::from_raw(raw) } {
                added.push(d);
            }
        }
    }
    Ok(added)
}

/// The endpoints added so far, in order.
pub fn servers() -> Vec<Endpoint> {
    CLIENT
        .lock()
        .map(|c| c.servers.iter().map(|(e, _)| e.clone()).collect())
        .unwrap_or_default()
}

/// Serves `device` on `endpoint` with ggml's RPC protocol until the process
/// ends (one client at a time). Returns only if the server cannot start.
/// `cache_dir` lets clients send a large tensor's hash instead of its bytes
/// when this server has seen it before.
pub fn serve(
    endpoint: &Endpoint,
    device: Device,
    threads: usize,
    cache_dir: Option<&Path>,
) -> Result<(), RpcError> {
    let reg = rpc_reg()?;
    // SAFETY: ggml-rpc.h: void ggml_backend_rpc_start_server(const char *
    // endpoint, const char * cache_dir, size_t n_threads, size_t n_devices,
    // ggml_backend_dev_t * devices).
    let start_server: StartServerFn =
        unsafe { std::mem::transmute(proc_address(reg, "ggml_backend_rpc_start_server")?) };
    let serve_error = |reason: String| RpcError::Serve {
        endpoint: endpoint.to_string(),
        reason,
    };
    let addr = endpoint.resolve().map_err(|e| serve_error(e.to_string()))?;
    // ggml only says "Failed to create server socket": find out why first.
    drop(TcpListener::bind(addr).map_err(|e| serve_error(format!("cannot listen: {e}")))?);
    let c_endpoint = CString::new(endpoint.to_string())
        .map_err(|_| RpcError::BadEndpoint(endpoint.to_string()))?;
    let c_cache = match cache_dir {
        Some(p) => Some(
            CString::new(p.to_string_lossy().into_owned())
                .map_err(|_| serve_error(format!("bad cache path {}", p.display())))?,
        ),
        None => None,
    };
    let mut devices = [device.as_ptr()];
    // SAFETY: NUL-terminated strings and one live device that outlive the
    // call (it returns only on failure); ggml copies what it keeps.
    unsafe {
        start_server(
            c_endpoint.as_ptr(),
            c_cache.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            threads.max(1),
            devices.len(),
            devices.as_mut_ptr(),
        )
    };
    Err(serve_error(
        "ggml's server stopped (see the message above)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_refuse() {
        let e = Endpoint::parse(" 127.0.0.1:50052 ").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 50052));
        assert!(e.is_loopback());
        assert!(!Endpoint::parse("10.0.0.2:1").unwrap().is_loopback());
        assert_eq!(Endpoint::parse_list("a:1,b:2").unwrap().len(), 2);
        for bad in [
            "", "host", "host:", ":50052", "h:0", "h:70000", "h:x", "a b:1",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(RpcError::BadEndpoint(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Endpoint::parse("[::1]:50052"),
            Err(RpcError::Ipv6(_))
        ));
        assert!(Endpoint::parse_list("a:1,a:1").is_err());
    }

    #[test]
    fn the_backend_is_built_in() {
        assert!(rpc_reg().is_ok(), "ggml was built without GGML_RPC=ON");
    }

    #[test]
    fn a_closed_port_is_a_clear_error() {
        // Bind then drop: the port is closed again when we connect.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = Endpoint::parse(&format!("127.0.0.1:{port}")).unwrap();
        let err = add_servers(&[e], Some(DEFAULT_TIMEOUT)).unwrap_err();
        assert!(
            matches!(&err, RpcError::Unreachable { endpoint, .. } if endpoint.ends_with(&port.to_string())),
            "{err}"
        );
    }
}
