//! Descriptors passed between processes over a Unix stream socket (SCM_RIGHTS): how paasd
//! and its edge process (the router) hand each other the listening sockets, so that neither
//! ever binds a port the other holds. Lives here because owning a received descriptor by
//! its number is `unsafe`. Must not interpret the descriptors: callers check what they got.
//!
//! The descriptors ride on a single marker byte. A reader must not read past the message
//! before it (a buffered reader could swallow the marker, and the kernel closes descriptors
//! whose byte was read without `recvmsg`), so the line before it is read a byte at a time by
//! [`read_line`].

use std::io::{IoSlice, IoSliceMut, Read};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// The most descriptors one marker carries.
pub const MAX_FDS: usize = 8;

/// Sends `marker` with `fds` attached.
pub fn send(stream: &UnixStream, marker: u8, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsgs = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    let byte = [marker];
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(&byte)],
        &cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(std::io::Error::from)?;
    if sent != 1 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "the marker byte was not sent",
        ));
    }
    Ok(())
}

/// Receives one marker byte and the descriptors attached to it (close-on-exec).
pub fn recv(stream: &UnixStream) -> std::io::Result<(u8, Vec<OwnedFd>)> {
    let mut byte = [0u8; 1];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(&mut byte)];
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    if msg.bytes == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let mut fds = Vec::new();
    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(list) = c {
            for fd in list {
                // SAFETY: the kernel just installed `fd` in our table for this message
                // (SCM_RIGHTS); nothing else in the process knows its number yet, so this
                // is its only owner.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if truncated {
        // Some descriptors were dropped by the kernel: refuse the set (the owned ones close).
        return Err(std::io::Error::other(
            "more descriptors than expected were sent",
        ));
    }
    let marker = iov[0][0];
    Ok((marker, fds))
}

/// One `\n`-terminated line (without it), read a byte at a time so that nothing after it is
/// consumed; at most `max` bytes.
pub fn read_line(mut stream: &UnixStream, max: usize) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ if byte[0] == b'\n' => break,
            _ => line.push(byte[0]),
        }
        if line.len() > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "line too long",
            ));
        }
    }
    String::from_utf8(line)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn a_listener_crosses_a_socket_and_still_listens() {
        let (a, b) = UnixStream::pair().expect("pair");
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        (&a).write_all(b"{\"hello\":1}\n").expect("write");
        send(&a, b'L', &[l.as_fd()]).expect("send");
        (&a).write_all(b"after\n").expect("write");
        assert_eq!(read_line(&b, 100).expect("line"), "{\"hello\":1}");
        let (marker, fds) = recv(&b).expect("recv");
        assert_eq!(marker, b'L');
        assert_eq!(fds.len(), 1);
        let got = std::net::TcpListener::from(fds.into_iter().next().expect("fd"));
        assert_eq!(got.local_addr().expect("addr").port(), port);
        drop(l);
        // The received copy keeps the socket listening.
        let _c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        assert!(got.accept().is_ok());
        assert_eq!(read_line(&b, 100).expect("line"), "after");
    }

    #[test]
    fn a_line_longer_than_allowed_is_refused() {
        let (a, b) = UnixStream::pair().expect("pair");
        (&a).write_all(&[b'x'; 64]).expect("write");
        assert!(read_line(&b, 10).is_err());
    }
}
