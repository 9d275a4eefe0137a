//! `xen-vchan`: a libxenvchan-compatible vchan bridged to stdin/stdout or a Unix socket, on
//! Linux (`/dev/xen/*`), in the spirit of Xen's `vchan-socket-proxy`.
//!
//! ```text
//! xen-vchan server [OPTIONS] <client-domid> <xs-path|port> [- | SOCKET]
//! xen-vchan client [OPTIONS] <server-domid> <xs-path|port> [- | SOCKET]
//! ```
//!
//! The xenstore path is given whole, or as a port number: `/local/domain/<server>/data/vchan/
//! <client>/<port>` (see [`xen_vchan::vchan_path`]). Without SOCKET (or with `-`) the channel
//! is bridged to stdin/stdout; a server connects to SOCKET once a client connected, a client
//! listens on SOCKET and bridges the first connection. `--send-pattern`/`--expect-pattern`
//! replace the bridge with a deterministic test pattern (every byte verified; the rate is
//! printed on stderr), for interop tests and benchmarks.

#[cfg(target_os = "linux")]
mod tool;

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    tool::main()
}

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("xen-vchan: runs on Linux only (/dev/xen/*)");
    std::process::ExitCode::FAILURE
}
