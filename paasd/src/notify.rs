//! The systemd readiness protocol (`Type=notify`, sd_notify(3)): paasd tells the service
//! manager when it is ready to serve and when it begins to stop, so `systemctl start` returns
//! only once the API socket and the router accept connections, and `systemctl status` shows
//! what paasd is doing. Without `$NOTIFY_SOCKET` (tests, the background mode of install.sh)
//! every call is a no-op.

use sd_notify::NotifyState;

/// `READY=1`: the API socket and the router are listening.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STOPPING=1`: shutdown has begun (draining and stopping instances may take a while).
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// `FDSTORE=1`: systemd keeps a copy of each listening socket (the unit's
/// `FileDescriptorStoreMax=`) and hands it to the next paasd of the unit (`LISTEN_FDS`),
/// across a crash and, with `FileDescriptorStorePreserve=restart` (systemd 254+), across
/// `systemctl restart`: connections made in between wait in its queue. Already stored
/// sockets are recognised by systemd and not stored twice.
/// Returns whether every socket was handed over (false without a service manager).
pub fn store_listeners(listeners: &[(&str, std::os::fd::BorrowedFd<'_>)]) -> bool {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return false;
    }
    let mut all = true;
    for (name, fd) in listeners {
        let states = [NotifyState::FdStore, NotifyState::FdName(name)];
        if let Err(e) = sd_notify::notify_with_fds(&states, std::slice::from_ref(fd)) {
            tracing::warn!(error = %e, name, "cannot hand a listening socket to systemd's store");
            all = false;
        }
    }
    all
}

fn send(states: &[NotifyState<'_>]) {
    // A service manager that cannot be told is not a reason to stop serving.
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}
