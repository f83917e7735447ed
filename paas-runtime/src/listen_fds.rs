//! Listening sockets handed to paasd when it starts, by whoever keeps them open across its
//! restarts: systemd's socket units, or any supervisor speaking the same protocol
//! (`LISTEN_PID` = our pid, `LISTEN_FDS` = how many, descriptors from 3 on). While paasd
//! restarts, the kernel queues new connections on them, so none is refused. Lives here
//! because owning a descriptor by its number is `unsafe`. Must not bind anything.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// One inherited listening socket.
#[derive(Debug)]
pub enum Listener {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

/// `sd_listen_fds(3)`'s first descriptor.
const FIRST: RawFd = 3;

static TAKEN: AtomicBool = AtomicBool::new(false);

/// The listening sockets passed to this process, close-on-exec from now on (so no child
/// holds them). Anything else passed (not a socket, not listening) is closed and logged.
/// Only the first call gets them.
pub fn take() -> Vec<Listener> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Vec::new();
    }
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<RawFd>().ok())
        .unwrap_or(0);
    if !ours || count <= 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for fd in FIRST..FIRST.saturating_add(count) {
        // Not a descriptor of ours (the range is what the protocol says, checked): skip.
        // SAFETY: F_GETFD only reads the descriptor table; an unused number gives EBADF.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            continue;
        }
        // SAFETY: by the protocol, descriptors 3..3+LISTEN_FDS were opened for this process
        // and handed over at exec; nothing else in it owns them (TAKEN makes this run once,
        // before anything else could have adopted them), and F_GETFD just showed it is open.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let _ = nix::fcntl::fcntl(
            &owned,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
        match classify(owned) {
            Some(l) => out.push(l),
            None => tracing::warn!(
                fd,
                "an inherited descriptor is not a listening socket; closed"
            ),
        }
    }
    out
}

fn classify(fd: OwnedFd) -> Option<Listener> {
    use nix::sys::socket::{getsockopt, sockopt, AddressFamily, SockaddrLike, SockaddrStorage};
    if !getsockopt(&fd, sockopt::AcceptConn).ok()? {
        return None;
    }
    let addr: SockaddrStorage =
        nix::sys::socket::getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd)).ok()?;
    match addr.family()? {
        AddressFamily::Unix => Some(Listener::Unix(fd.into())),
        AddressFamily::Inet | AddressFamily::Inet6 => Some(Listener::Tcp(fd.into())),
        _ => None,
    }
}
