//! The container helper: `paasd __runtime-helper`, re-executed from `/proc/self/exe` so that
//! forking happens in a fresh single-threaded process, never in the multi-threaded daemon.
//!
//! Before it has a [`Spec`] (a spare helper waits for one), it makes what no spec decides:
//! it `unshare(CLONE_NEWPID)`s and forks, and the parent enters a new network namespace.
//! Then it reads the spec from stdin (a socketpair) and hands it to the child. The child
//! (PID 1 of the new namespace) enters new mount/uts/ipc namespaces (only now, so that it
//! sees the host's mounts as they are when the spec comes), then joins its cgroup and enters
//! a cgroup namespace, builds the root filesystem, drops privileges, forks the command (which
//! execs) and stays as the container's init (`init.rs`). The parent stays as the container's
//! monitor: it wires the child's network while the child builds its rootfs, then forwards
//! output lines and the exit status to paasd as [`FromHelper`] JSON lines.
//! Must not hold platform logic: it executes a spec, nothing more.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

use super::proto::{Attach, FromHelper, NetMode, Spec, Stream, ToHelper, MAX_LINE};
use super::{init, net, rootfs, security, timing};

/// argv[1] that selects this mode.
pub const HELPER_ARG: &str = "__runtime-helper";

/// Entry point of the helper process; returns its exit code.
pub fn main() -> i32 {
    timing::mark("helper main");
    // "paas-spare" until it has a spec, then "paas-helper": `ps` tells them apart.
    set_name("paas-spare");
    // SAFETY: fd 0 is the socketpair paasd passed as our stdin; we take ownership of it once.
    let ctrl = unsafe { UnixStream::from_raw_fd(0) };
    let Some(mut link) = Link::new(ctrl) else {
        return 2;
    };
    let early = early();
    let mut line = String::new();
    if link.read_spec(&mut line) == 0 {
        // paasd went away (or dropped its spare): the child sees EOF on its spec pipe.
        return 2;
    }
    let spec: Spec = match serde_json::from_str(&line) {
        Ok(s) => s,
        Err(e) => {
            link.send(&failed("read spec", e));
            return 2;
        }
    };
    timing::mark("spec read");
    set_name("paas-helper");
    let code = match early.and_then(|early| run(&line, &spec, early, &mut link)) {
        Ok(()) => 0,
        Err((stage, error)) => {
            link.send(&FromHelper::Failed { stage, error });
            1
        }
    };
    link.close();
    code
}

type StageError = (String, String);

fn failed(stage: &str, e: impl std::fmt::Display) -> FromHelper {
    FromHelper::Failed {
        stage: stage.to_string(),
        error: e.to_string(),
    }
}

fn stage<T, E: std::fmt::Display>(name: &str, r: Result<T, E>) -> Result<T, StageError> {
    r.map_err(|e| (name.to_string(), e.to_string()))
}

/// The monitor's link to paasd: the connection it reports on (its stdin at first, then the
/// newest paasd that attached), and, for a container that outlives paasd, the socket a
/// later paasd attaches through and the lines kept while no paasd listens.
struct Link {
    reader: Option<BufReader<UnixStream>>,
    writer: Option<UnixStream>,
    /// Bound once the spec asks for it (`Spec::attach`).
    listener: Option<(std::os::unix::net::UnixListener, PathBuf)>,
    id: String,
    tag: String,
    /// The container's host pid, once created.
    pid: i32,
    /// Encoded lines no paasd has read yet, oldest first.
    pending: std::collections::VecDeque<Vec<u8>>,
    pending_bytes: usize,
    /// Output lines dropped from `pending` (oldest first) to keep it bounded.
    dropped: u64,
    /// The container's first process has ended (`Exited` is sent or pending).
    exited: bool,
    /// paasd asked for SIGKILL: nobody will come back for this container's exit.
    killed: bool,
}

/// What a monitor keeps of the output while no paasd listens; older lines go first.
const MAX_PENDING_BYTES: usize = 4 << 20;

impl Link {
    fn new(ctrl: UnixStream) -> Option<Link> {
        let reader = BufReader::new(ctrl.try_clone().ok()?);
        Some(Link {
            reader: Some(reader),
            writer: Some(ctrl),
            listener: None,
            id: String::new(),
            tag: String::new(),
            pid: 0,
            pending: Default::default(),
            pending_bytes: 0,
            dropped: 0,
            exited: false,
            killed: false,
        })
    }

    fn read_spec(&mut self, line: &mut String) -> usize {
        match self.reader.as_mut() {
            Some(r) => r.read_line(line).unwrap_or(0),
            None => 0,
        }
    }

    /// Binds the socket a later paasd attaches through. Only root can reach it: the
    /// directory is root's alone.
    fn listen(&mut self, attach: &Attach) -> Result<(), StageError> {
        let _ = std::fs::remove_file(&attach.socket);
        let l = stage(
            "attach socket",
            std::os::unix::net::UnixListener::bind(&attach.socket),
        )?;
        stage("attach socket", l.set_nonblocking(true))?;
        self.listener = Some((l, attach.socket.clone()));
        self.id = attach.id.clone();
        self.tag = attach.tag.clone();
        Ok(())
    }

    /// Best effort: with no paasd (or a broken connection) the line waits for the next one,
    /// if this container can be attached to; otherwise it is dropped.
    fn send(&mut self, msg: &FromHelper) {
        let Ok(mut line) = serde_json::to_vec(msg) else {
            return;
        };
        line.push(b'\n');
        if matches!(msg, FromHelper::Exited { .. }) {
            self.exited = true;
        }
        if self.pending.is_empty() {
            if let Some(w) = self.writer.as_mut() {
                if w.write_all(&line).is_ok() {
                    return;
                }
                self.detach();
            }
        }
        if self.listener.is_none() {
            return;
        }
        self.pending_bytes += line.len();
        self.pending.push_back(line);
        while self.pending_bytes > MAX_PENDING_BYTES && self.pending.len() > 1 {
            if let Some(old) = self.pending.pop_front() {
                self.pending_bytes -= old.len();
                self.dropped += 1;
            }
        }
    }

    /// paasd went away: keep supervising, keep the output for the next one.
    fn detach(&mut self) {
        self.reader = None;
        self.writer = None;
    }

    /// A paasd connected: it replaces the current one and gets the container's state, then
    /// everything kept for it.
    fn attach(&mut self, stream: UnixStream) {
        let Ok(reader) = stream.try_clone() else {
            return;
        };
        let _ = stream.set_nonblocking(false);
        let hello = FromHelper::Adopted {
            pid: self.pid,
            id: self.id.clone(),
            tag: self.tag.clone(),
            dropped: self.dropped,
            running: !self.exited,
        };
        let Ok(mut line) = serde_json::to_vec(&hello) else {
            return;
        };
        line.push(b'\n');
        let mut writer = stream;
        if writer.write_all(&line).is_err() {
            return;
        }
        self.dropped = 0;
        self.reader = Some(BufReader::new(reader));
        self.writer = Some(writer);
        while let Some(front) = self.pending.front() {
            let sent = self
                .writer
                .as_mut()
                .is_some_and(|w| w.write_all(front).is_ok());
            if !sent {
                self.detach();
                return;
            }
            if let Some(sent) = self.pending.pop_front() {
                self.pending_bytes -= sent.len();
            }
        }
    }

    /// A new connection on the attach socket, if one is waiting.
    fn accept(&mut self) {
        let accepted = match self.listener.as_ref() {
            Some((l, _)) => l.accept(),
            None => return,
        };
        if let Ok((stream, _)) = accepted {
            self.attach(stream);
        }
    }

    /// After the exit: when no paasd got it, wait for the next one (unless paasd killed
    /// the container itself), then remove the socket.
    fn close(&mut self) {
        if !self.pending.is_empty() && !self.killed {
            if let Some((l, _)) = self.listener.as_ref() {
                let _ = l.set_nonblocking(false);
            }
            while !self.pending.is_empty() {
                let accepted = match self.listener.as_ref() {
                    Some((l, _)) => l.accept(),
                    None => break,
                };
                match accepted {
                    Ok((stream, _)) => self.attach(stream),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        if let Some((_, path)) = self.listener.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What is made before the spec comes: the container's first process (forked into a new
/// pid namespace, waiting for its spec on `spec`) and the network namespace the monitor is
/// in. About half a millisecond of a start (a pid namespace's first fork mounts its procfs),
/// off the start path for a spare helper.
struct Early {
    child: Pid,
    pipes: Pipes,
    spec: OwnedFd,
    netns: Netns,
}

fn early() -> Result<Early, StageError> {
    let (stdout_r, stdout_w) = stage("pipe", pipe2(nix::fcntl::OFlag::O_CLOEXEC))?;
    let (stderr_r, stderr_w) = stage("pipe", pipe2(nix::fcntl::OFlag::O_CLOEXEC))?;
    // child -> parent: "namespaces ready" (one byte) and, on failure, the error text.
    let (ready_r, ready_w) = stage("pipe", pipe2(nix::fcntl::OFlag::O_CLOEXEC))?;
    // parent -> child: "n", the links of its network namespace are ready (unless it has the
    // host's network). EOF means abort.
    let (go_r, go_w) = stage("pipe", pipe2(nix::fcntl::OFlag::O_CLOEXEC))?;
    // child -> parent: stays open until exec (CLOEXEC); bytes on it are a setup error.
    let (err_r, err_w) = stage("pipe", pipe2(nix::fcntl::OFlag::O_CLOEXEC))?;
    // init -> parent: how the command ended (`init::Ended::record`), written as the init exits.
    let (status_r, status_w) = stage("pipe", pipe2(nix::fcntl::OFlag::O_CLOEXEC))?;
    // parent -> child: the spec, then EOF. EOF alone: there will be no container.
    let (spec_r, spec_w) = stage("pipe", pipe2(nix::fcntl::OFlag::O_CLOEXEC))?;

    let filter = stage("build seccomp filter", security::app_filter())?;
    timing::mark("filter built");
    // Made while still in the host's network namespace, for the veth (unused otherwise).
    let host = stage("network", net::veth::host_socket())?;
    stage("unshare pid namespace", unshare(CloneFlags::CLONE_NEWPID))?;
    let monitor_pid = std::process::id();
    // SAFETY: this process is single-threaded (a fresh exec of paasd that started no runtime),
    // so the child may run arbitrary code after fork.
    match stage("fork", unsafe { fork() })? {
        ForkResult::Child => {
            drop((
                stdout_r, stderr_r, ready_r, go_w, err_r, status_r, spec_w, host,
            ));
            let ends = ChildEnds {
                spec: spec_r,
                stdout: stdout_w,
                stderr: stderr_w,
                ready: ready_w,
                go: go_r,
                status: status_w,
            };
            let code = match child(monitor_pid, &filter, ends, &err_w) {
                Ok(never) => match never {},
                Err((stage, error)) => {
                    let mut f = std::fs::File::from(err_w);
                    let _ = write!(f, "{stage}\n{error}");
                    127
                }
            };
            // SAFETY: _exit skips atexit handlers and destructors shared with the parent image.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop((stdout_w, stderr_w, ready_w, go_r, err_w, status_w, spec_r));
            // The container's network namespace, made while the child waits for its spec.
            let netns = Netns::enter(host).inspect_err(|_| {
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
            })?;
            timing::mark("monitor: netns made");
            Ok(Early {
                child,
                pipes: Pipes {
                    stdout: stdout_r,
                    stderr: stderr_r,
                    ready: ready_r,
                    go: go_w,
                    err: err_r,
                    status: status_r,
                },
                spec: spec_w,
                netns,
            })
        }
    }
}

/// Hands the spec (`line`, as read) to the child made early, and monitors the container.
fn run(line: &str, spec: &Spec, early: Early, out: &mut Link) -> Result<(), StageError> {
    let Early {
        child,
        pipes,
        spec: spec_w,
        netns,
    } = early;
    // A spare is made at the lowest priority and paasd resets only the monitor's when it
    // takes it: the container runs at the monitor's.
    // SAFETY: getpriority and setpriority only read their integer arguments.
    unsafe {
        let own = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, child.as_raw() as libc::id_t, own);
    }
    if let Err(e) = std::fs::File::from(spec_w).write_all(line.as_bytes()) {
        let _ = kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        return Err(("spec".into(), e.to_string()));
    }
    if let Some(attach) = &spec.attach {
        out.listen(attach).inspect_err(|_| {
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
        })?;
    }
    let netns = (spec.net != NetMode::Host).then_some(netns);
    monitor(spec, child, out, pipes, netns)
}

struct Pipes {
    stdout: OwnedFd,
    stderr: OwnedFd,
    ready: OwnedFd,
    go: OwnedFd,
    err: OwnedFd,
    status: OwnedFd,
}

fn monitor(
    spec: &Spec,
    child: Pid,
    out: &mut Link,
    pipes: Pipes,
    mut netns: Option<Netns>,
) -> Result<(), StageError> {
    let abort = |e: StageError| {
        let _ = kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        e
    };
    let mut errf = std::fs::File::from(pipes.err);
    // "n": the links in the network namespace the child joins are ready. Made first, while
    // the child makes its namespaces and builds its rootfs, so that it need not wait.
    let mut go = std::fs::File::from(pipes.go);
    let mut started = Ok(());
    if let Some(netns) = netns.as_mut() {
        if let Err(e) = netns.wire(&spec.net) {
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            // A child that failed first (taking its namespace along) wrote why.
            let mut theirs = String::new();
            let _ = errf.read_to_string(&mut theirs);
            return Err(match theirs.split_once('\n') {
                Some((stage, error)) => (stage.to_string(), error.to_string()),
                None => e,
            });
        }
        timing::mark("monitor: network wired");
        started = go.write_all(b"n");
    }
    drop(go);
    let mut ready = [0u8; 1];
    let n = std::fs::File::from(pipes.ready)
        .read(&mut ready)
        .unwrap_or(0);
    if n != 1 {
        return Err(abort(child_error(&mut errf)));
    }
    timing::mark("monitor: child ready");
    // Holding the container's mount namespace moves its teardown (unmounting the rootfs and
    // everything on it, which waits for an RCU grace period) from the exit of the container's
    // last process, where it would delay the exit status by milliseconds, to the exit of this
    // monitor right after it reported it. Best effort: without it the teardown just comes first.
    let _mounts = std::fs::File::open(format!("/proc/{}/ns/mnt", child.as_raw())).ok();
    out.pid = child.as_raw();
    out.send(&FromHelper::Created {
        pid: child.as_raw(),
    });

    // The error pipe closes on exec (CLOEXEC): EOF with no bytes means the command is running.
    // A child that failed meanwhile has written why.
    let mut errbuf = String::new();
    let _ = errf.read_to_string(&mut errbuf);
    if !errbuf.is_empty() {
        let _ = waitpid(child, None);
        let (stage, error) = errbuf.split_once('\n').unwrap_or(("setup", &errbuf));
        return Err((stage.to_string(), error.to_string()));
    }
    started
        .map_err(|e| ("start".to_string(), e.to_string()))
        .map_err(abort)?;
    timing::mark("monitor: exec seen");
    out.send(&FromHelper::Started);
    pump(child, out, pipes.stdout, pipes.stderr);
    let status = loop {
        match waitpid(child, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    // The init says how the command ended (its own exit code cannot say "signal"); without
    // its record (the init itself was killed, e.g. SIGKILL from paasd or the OOM killer), its
    // own wait status is the container's.
    let mut record = String::new();
    let _ = std::fs::File::from(pipes.status).read_to_string(&mut record);
    let (code, signal) = match (init::Ended::parse(&record), status) {
        (Some(init::Ended::Exited(c)), _) => (Some(c), None),
        (Some(init::Ended::Signaled(s)), _) => (None, Some(s)),
        (None, Ok(WaitStatus::Exited(_, c))) => (Some(c), None),
        (None, Ok(WaitStatus::Signaled(_, s, _))) => (None, Some(s as i32)),
        _ => (None, None),
    };
    timing::mark("monitor: reaped");
    out.send(&FromHelper::Exited { code, signal });
    Ok(())
}

/// The container's network namespace, made by the monitor before the spec comes; the child
/// joins it ("s") before it mounts /sys. The monitor has no network business of its own:
/// being in the container's namespace until it has reported the exit costs nothing (and with
/// the host's network, the namespace is unused).
struct Netns {
    /// A netlink socket left in the host's namespace (where the bridge is), for the veth.
    host: net::veth::Rtnl,
}

impl Netns {
    /// Moves the monitor into a new network namespace.
    fn enter(host: net::veth::Rtnl) -> Result<Netns, StageError> {
        stage(
            "unshare network namespace",
            unshare(CloneFlags::CLONE_NEWNET),
        )?;
        Ok(Netns { host })
    }

    /// Its links, made while the child builds its rootfs: with a veth, the pair from the
    /// host's side; then, from inside, `lo` up and `eth0` configured.
    fn wire(&mut self, mode: &NetMode) -> Result<(), StageError> {
        let eth0 = match mode {
            NetMode::Veth(veth) => {
                let ns = stage("network", std::fs::File::open("/proc/self/ns/net"))?;
                stage("network", net::veth::create(&mut self.host, &ns, veth))?;
                Some(&veth.eth0)
            }
            _ => None,
        };
        stage("network", net::inside::configure(eth0))
    }
}

/// Reads a setup error the child wrote before it could exec.
fn child_error(err: &mut std::fs::File) -> StageError {
    let mut s = String::new();
    let _ = err.read_to_string(&mut s);
    match s.split_once('\n') {
        Some((stage, error)) => (stage.to_string(), error.to_string()),
        None if s.is_empty() => (
            "setup".into(),
            "container process died before starting".into(),
        ),
        None => ("setup".into(), s),
    }
}

/// Forwards output lines until both pipes close (the whole pid namespace is gone by then:
/// PID 1 exiting kills the rest), relays signals paasd asks for, and lets a new paasd attach.
fn pump(child: Pid, link: &mut Link, stdout: OwnedFd, stderr: OwnedFd) {
    const CTRL: usize = 2;
    const ATTACH: usize = 3;
    let mut bufs = [Vec::new(), Vec::new()];
    let mut open = [Some(stdout), Some(stderr)];
    let streams = [Stream::Stdout, Stream::Stderr];
    while open.iter().any(Option::is_some) {
        let mut fds: Vec<PollFd> = Vec::with_capacity(4);
        let mut which: Vec<usize> = Vec::with_capacity(4);
        for (i, fd) in open.iter().enumerate() {
            if let Some(fd) = fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        if let Some(r) = link.reader.as_ref() {
            fds.push(PollFd::new(r.get_ref().as_fd(), PollFlags::POLLIN));
            which.push(CTRL);
        }
        if let Some((l, _)) = link.listener.as_ref() {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
            which.push(ATTACH);
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<usize> = fds
            .iter()
            .zip(&which)
            .filter(|(f, _)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, w)| *w)
            .collect();
        drop(fds);
        for w in ready {
            if w == ATTACH {
                link.accept();
                continue;
            }
            if w == CTRL {
                let mut line = String::new();
                let read = link.reader.as_mut().map(|r| r.read_line(&mut line));
                match read {
                    Some(Ok(n)) if n > 0 => {
                        if let Ok(ToHelper::Signal { signal }) = serde_json::from_str(&line) {
                            if let Ok(sig) = Signal::try_from(signal) {
                                if sig == Signal::SIGKILL {
                                    link.killed = true;
                                }
                                // To the container's init, which passes the stop signals on
                                // to every process inside (once each); SIGKILL takes the init
                                // and with it the whole namespace.
                                let _ = kill(child, sig);
                            }
                        }
                    }
                    // paasd went away: keep supervising, keep the output for the next one.
                    _ => link.detach(),
                }
                continue;
            }
            let Some(fd) = open[w].as_ref() else { continue };
            let mut chunk = [0u8; 8192];
            match nix::unistd::read(fd, &mut chunk) {
                Ok(0) | Err(_) => {
                    flush(link, streams[w], &mut bufs[w], true);
                    open[w] = None;
                }
                Ok(n) => {
                    bufs[w].extend_from_slice(&chunk[..n]);
                    flush(link, streams[w], &mut bufs[w], false);
                }
            }
        }
    }
}

/// Sends every complete line in `buf` (and the rest when `eof`), splitting overlong ones.
fn flush(out: &mut Link, stream: Stream, buf: &mut Vec<u8>, eof: bool) {
    loop {
        let cut = match buf.iter().position(|b| *b == b'\n') {
            Some(i) if i <= MAX_LINE => Some((i, 1)),
            _ if buf.len() > MAX_LINE => Some((MAX_LINE, 0)),
            _ if eof && !buf.is_empty() => Some((buf.len(), 0)),
            _ => None,
        };
        let Some((end, skip)) = cut else { return };
        let line = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + skip);
        let ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        out.send(&FromHelper::Output {
            stream,
            line,
            ts_ms,
        });
    }
}

/// The child's ends of the pipes it shares with the monitor (the error pipe apart).
struct ChildEnds {
    /// The spec, from the monitor once it has it.
    spec: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    ready: OwnedFd,
    go: OwnedFd,
    /// The init's report of how the command ended.
    status: OwnedFd,
}

/// The container's first process, up to exec. Returns only on failure.
fn child(
    monitor: u32,
    filter: &seccompiler::BpfProgram,
    ends: ChildEnds,
    err: &OwnedFd,
) -> Result<std::convert::Infallible, StageError> {
    let ChildEnds {
        spec,
        stdout,
        stderr,
        ready,
        go,
        status,
    } = ends;
    timing::mark("child: forked");
    // A session of its own, without a controlling terminal: otherwise /dev/tty would be the
    // terminal of whoever started paasd (an admin's root shell), open to TIOCSTI.
    stage("setsid", nix::unistd::setsid())?;
    // If the monitor dies, so does the container: it is the container's only supervisor.
    stage(
        "set parent death signal",
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL),
    )?;
    // Waits here while the helper is a spare. EOF: the monitor is gone or has no spec.
    let mut line = String::new();
    stage(
        "read spec",
        std::fs::File::from(spec).read_to_string(&mut line),
    )?;
    let spec: Spec = stage("read spec", serde_json::from_str(&line))?;
    let spec = &spec;
    timing::mark("child: spec");
    // The network namespace comes from the monitor.
    let flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    stage("unshare namespaces", unshare(flags))?;
    timing::mark("child: unshared");
    stage("signal ready", std::fs::File::from(ready).write_all(b"r"))?;
    let mut go = std::fs::File::from(go);
    join_cgroup(&spec.cgroup_procs)?;
    rootfs::setup(&spec.rootfs, || {
        if spec.net == NetMode::Host {
            return Ok(());
        }
        // The monitor's, made before the spec came: our parent, alive (or we would be dead),
        // so its pid is not reused.
        let ns = stage(
            "network namespace",
            std::fs::File::open(format!("/proc/{monitor}/ns/net")),
        )?;
        stage(
            "enter network namespace",
            setns(&ns, CloneFlags::CLONE_NEWNET),
        )?;
        timing::mark("child: netns joined");
        Ok(())
    })?;
    timing::mark("child: rootfs");
    stage("set hostname", nix::unistd::sethostname(&spec.hostname))?;
    let program = resolve(spec)?;
    let argv = cstrings("argv", spec.argv.iter().map(String::as_str))?;
    let envp = cstrings(
        "env",
        spec.env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    )?;
    stage("chdir", nix::unistd::chdir(spec.cwd.as_str()))?;
    // The monitor configures the links meanwhile.
    if spec.net != NetMode::Host {
        wait_for(&mut go, b'n')?;
    }
    drop(go);
    timing::mark("child: network");
    stage("stdio", redirect_stdio(&stdout, &stderr))?;
    drop((stdout, stderr));
    timing::mark("child: pre-drop");
    security::drop_privileges(spec.uid, spec.gid, filter)?;
    timing::mark("child: dropped");
    // The kernel clears the parent-death signal when credentials change: set it again, then
    // make sure the monitor did not die in between. (getppid() cannot tell: as PID 1 of its
    // namespace our parent is always 0.) The monitor holds the read end of the error pipe
    // until we exec; POLLERR on our write end means it is gone.
    stage(
        "set parent death signal",
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL),
    )?;
    if monitor_gone(err) {
        return Err(("start".into(), "the container monitor exited".into()));
    }
    // This process becomes the container's init (PID 1); the command runs as its child.
    // Named first: the command may read /proc/1/comm at once.
    set_name("paas-init");
    let mask = stage("block signals", init::block())?;
    let command = spawn(&program, &argv, &envp)?;
    // Our copy of the error pipe must close, or the monitor would never see the command's
    // exec close it.
    // SAFETY: `err` is our caller's descriptor, but this frame never returns (the init exits
    // from `supervise`), so it is closed exactly once and never used again here.
    unsafe { libc::close(std::os::fd::AsRawFd::as_raw_fd(err)) };
    init::supervise(command, &mask, status)
}

/// Starts the command with `posix_spawn`: a vfork, so nothing of this process's memory is
/// copied (a fork of it cost ~0.2 ms of every start). Its signals are reset (mask empty,
/// every disposition default); every descriptor but stdio is close-on-exec, the init's
/// status pipe included. An exec failure is its error.
fn spawn(program: &CString, argv: &[CString], envp: &[CString]) -> Result<Pid, StageError> {
    use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
    let mut defaults = nix::sys::signal::SigSet::all();
    defaults.remove(Signal::SIGKILL);
    defaults.remove(Signal::SIGSTOP);
    let attr = PosixSpawnAttr::init().and_then(|mut a| {
        a.set_sigdefault(&defaults)?;
        a.set_sigmask(&nix::sys::signal::SigSet::empty())?;
        a.set_flags(
            PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK,
        )?;
        Ok(a)
    });
    let attr = stage("spawn the command", attr)?;
    let actions = stage("spawn the command", PosixSpawnFileActions::init())?;
    let mut waits = ETXTBSY_WAITS_MS.iter();
    loop {
        let e = match posix_spawn(program.as_c_str(), &actions, &attr, argv, envp) {
            Ok(pid) => return Ok(pid),
            Err(e) => e,
        };
        match (e, waits.next()) {
            (nix::errno::Errno::ETXTBSY, Some(ms)) => {
                std::thread::sleep(std::time::Duration::from_millis(*ms));
            }
            _ => {
                let name = program.to_string_lossy();
                let why = e.desc().to_lowercase();
                return Err(("exec".into(), format!("exec {name}: {why}")));
            }
        }
    }
}

/// How long `spawn` waits before each retry of an exec that failed with ETXTBSY (~1.3 s in
/// all). That error is transient when the program was just written: paasd copies buildpacks
/// into the build while other threads of it start processes, and a child forked meanwhile
/// holds a copy of the write descriptor until its own exec closes it (close-on-exec cannot
/// close it sooner). A loaded host can stretch that window to milliseconds. A program kept
/// open for writing for longer than this still fails, with the kernel's message.
const ETXTBSY_WAITS_MS: [u64; 8] = [5, 10, 20, 40, 80, 160, 320, 640];

/// Joins the cgroup whose join files are `files` and makes it the root of a new cgroup
/// namespace. This process has one thread: writing 0 moves exactly it.
/// Nothing runs in the container before it is in.
fn join_cgroup(files: &[PathBuf]) -> Result<(), StageError> {
    for file in files {
        stage(
            &format!("join cgroup {}", file.display()),
            std::fs::write(file, "0"),
        )?;
    }
    stage(
        "unshare cgroup namespace",
        unshare(CloneFlags::CLONE_NEWCGROUP),
    )?;
    timing::mark("child: cgroup joined");
    Ok(())
}

/// Reads the monitor's next go-ahead, which must be `byte`; EOF means abort.
fn wait_for(go: &mut std::fs::File, byte: u8) -> Result<(), StageError> {
    let mut got = [0u8; 1];
    match go.read(&mut got) {
        Ok(1) if got[0] == byte => Ok(()),
        _ => Err(("wait for start".into(), "aborted before start".into())),
    }
}

fn monitor_gone(err: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(err.as_fd(), PollFlags::POLLOUT)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR)),
        Err(_) => true,
    }
}

/// Exec keeps ignored signals ignored: Rust's runtime ignores SIGPIPE and `nohup` SIGHUP,
/// which apps must not inherit. Back to defaults, nothing blocked.
fn redirect_stdio(stdout: &OwnedFd, stderr: &OwnedFd) -> nix::Result<()> {
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(stdout)?;
    nix::unistd::dup2_stderr(stderr)?;
    Ok(())
}

/// Finds argv[0] on the container's PATH (from the spec's env), as execvp would.
fn resolve(spec: &Spec) -> Result<CString, StageError> {
    let name = spec
        .argv
        .first()
        .ok_or_else(|| ("exec".to_string(), "empty command".to_string()))?;
    if name.contains('/') {
        return cstring("exec", name);
    }
    let path = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or("/usr/local/bin:/usr/bin:/bin", |(_, v)| v.as_str());
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{dir}/{name}");
        if nix::unistd::access(candidate.as_str(), nix::unistd::AccessFlags::X_OK).is_ok() {
            return cstring("exec", &candidate);
        }
    }
    Err((
        "exec".into(),
        format!("exec {name}: not found in PATH ({path})"),
    ))
}

fn cstring(what: &str, s: &str) -> Result<CString, StageError> {
    CString::new(s).map_err(|_| (what.to_string(), format!("{s:?} contains a NUL byte")))
}

fn cstrings<'a>(what: &str, it: impl Iterator<Item = &'a str>) -> Result<Vec<CString>, StageError> {
    it.map(|s| cstring(what, s)).collect()
}

/// Names the process (first 15 bytes) so `ps` tells the stages apart.
fn set_name(name: &str) {
    if let Ok(c) = CString::new(name) {
        let _ = nix::sys::prctl::set_name(&c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(line: &str) -> FromHelper {
        FromHelper::Output {
            stream: Stream::Stdout,
            line: line.to_string(),
            ts_ms: 1,
        }
    }

    /// A link whose first paasd is already gone, listening at a socket in `dir`.
    fn detached_link(dir: &std::path::Path) -> (Link, PathBuf) {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let mut link = Link::new(theirs).expect("link");
        let socket = dir.join("m");
        link.listen(&Attach {
            socket: socket.clone(),
            id: "app-web.1-1-1".into(),
            tag: "{\"app\":\"app\"}".into(),
        })
        .expect("listen");
        link.pid = 4242;
        drop(ours);
        (link, socket)
    }

    fn script(dir: &std::path::Path) -> (PathBuf, std::fs::File) {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join("run");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&path)
            .expect("create");
        file.write_all(b"#!/bin/sh\nexit 7\n").expect("write");
        (path, file)
    }

    fn c(s: &str) -> CString {
        CString::new(s).expect("cstring")
    }

    #[test]
    fn a_program_still_open_for_writing_briefly_is_run_once_it_is_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, file) = script(dir.path());
        let closer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            drop(file);
        });
        let program = c(path.to_str().expect("utf8"));
        let pid =
            spawn(&program, std::slice::from_ref(&program), &[]).expect("spawned after the close");
        closer.join().expect("closer");
        assert_eq!(
            waitpid(pid, None).expect("wait"),
            WaitStatus::Exited(pid, 7)
        );
    }

    #[test]
    fn a_program_kept_open_for_writing_fails_with_the_kernels_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, _file) = script(dir.path());
        let program = c(path.to_str().expect("utf8"));
        let (stage, message) =
            spawn(&program, std::slice::from_ref(&program), &[]).expect_err("busy");
        assert_eq!(stage, "exec");
        assert_eq!(message, format!("exec {}: text file busy", path.display()));
    }

    fn read_all(stream: UnixStream) -> Vec<FromHelper> {
        BufReader::new(stream)
            .lines()
            .map(|l| serde_json::from_str(&l.expect("line")).expect("json"))
            .collect()
    }

    #[test]
    fn output_and_the_exit_wait_for_the_next_paasd_behind_its_hello() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut link, socket) = detached_link(dir.path());
        link.send(&output("one"));
        link.send(&output("two"));
        link.send(&FromHelper::Exited {
            code: Some(3),
            signal: None,
        });
        let next = UnixStream::connect(&socket).expect("connect");
        link.accept();
        link.close();
        assert!(!socket.exists(), "the socket goes with the monitor");
        drop(link);
        assert_eq!(
            read_all(next),
            [
                FromHelper::Adopted {
                    pid: 4242,
                    id: "app-web.1-1-1".into(),
                    tag: "{\"app\":\"app\"}".into(),
                    dropped: 0,
                    running: false,
                },
                output("one"),
                output("two"),
                FromHelper::Exited {
                    code: Some(3),
                    signal: None
                },
            ]
        );
    }

    #[test]
    fn the_kept_output_is_bounded_and_the_oldest_lines_go_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut link, socket) = detached_link(dir.path());
        let long = "x".repeat(1000);
        let n = 2 * MAX_PENDING_BYTES / 1000;
        for i in 0..n {
            link.send(&output(&format!("{i} {long}")));
        }
        assert!(
            link.pending_bytes <= MAX_PENDING_BYTES,
            "{}",
            link.pending_bytes
        );
        let next = UnixStream::connect(&socket).expect("connect");
        next.set_nonblocking(false).expect("blocking");
        let reader = std::thread::spawn(move || read_all(next));
        link.accept();
        drop(link);
        let got = reader.join().expect("reader");
        let FromHelper::Adopted {
            dropped, running, ..
        } = &got[0]
        else {
            panic!("hello first: {:?}", got.first());
        };
        assert!(*running);
        assert_eq!(
            *dropped as usize + got.len() - 1,
            n,
            "every line kept or counted"
        );
        assert!(*dropped > 0);
        assert_eq!(
            got.last(),
            Some(&output(&format!("{} {long}", n - 1))),
            "the newest kept"
        );
    }

    #[test]
    fn the_newest_paasd_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut link, socket) = detached_link(dir.path());
        let first = UnixStream::connect(&socket).expect("connect");
        link.accept();
        let second = UnixStream::connect(&socket).expect("connect");
        link.accept();
        link.send(&output("to the second"));
        drop(link);
        let first = read_all(first);
        let second = read_all(second);
        assert_eq!(first.len(), 1, "only its hello: {first:?}");
        assert_eq!(second.len(), 2, "{second:?}");
        assert_eq!(second[1], output("to the second"));
    }
}
