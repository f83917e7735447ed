//! Dropping privileges right before exec: supplementary groups, gid/uid, every capability
//! (bounding, inheritable, ambient; permitted and effective go with the uid change),
//! `no_new_privs`, and the seccomp filter. Runs only in the helper's child. Must never be
//! skipped or reordered: the filter needs `no_new_privs`, the bounding set needs CAP_SETPCAP
//! (so it goes before the uid change).

use caps::CapSet;
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use seccompiler::BpfProgram;

type StageError = (String, String);

fn err(stage: &str, e: impl std::fmt::Display) -> StageError {
    (stage.to_string(), e.to_string())
}

/// `filter` comes from [`app_filter`], built before fork so the child only installs it.
pub fn drop_privileges(uid: u32, gid: u32, filter: &BpfProgram) -> Result<(), StageError> {
    if uid == 0 {
        return Err(err(
            "drop privileges",
            "refusing to run a container as uid 0",
        ));
    }
    caps::clear(None, CapSet::Bounding).map_err(|e| err("drop bounding capabilities", e))?;
    setgroups(&[Gid::from_raw(gid)]).map_err(|e| err("setgroups", e))?;
    let g = Gid::from_raw(gid);
    setresgid(g, g, g).map_err(|e| err("setgid", e))?;
    let u = Uid::from_raw(uid);
    setresuid(u, u, u).map_err(|e| err("setuid", e))?;
    for set in [
        CapSet::Inheritable,
        CapSet::Ambient,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set).map_err(|e| err("clear capabilities", e))?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(|e| err("no_new_privs", e))?;
    seccompiler::apply_filter(filter).map_err(|e| err("apply seccomp filter", e))?;
    Ok(())
}

/// Syscalls an app never needs and that widen the attack surface; they fail with EPERM.
const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "init_module",
    "iopl",
    "ioperm",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "clock_settime",
    "swapoff",
    "swapon",
    "syslog",
    "umount2",
    "userfaultfd",
    "vhangup",
];

fn syscall_nr(name: &str) -> Option<i64> {
    Some(match name {
        "acct" => libc::SYS_acct,
        "add_key" => libc::SYS_add_key,
        "bpf" => libc::SYS_bpf,
        "delete_module" => libc::SYS_delete_module,
        "finit_module" => libc::SYS_finit_module,
        "fsconfig" => libc::SYS_fsconfig,
        "fsmount" => libc::SYS_fsmount,
        "fsopen" => libc::SYS_fsopen,
        "fspick" => libc::SYS_fspick,
        "init_module" => libc::SYS_init_module,
        #[cfg(target_arch = "x86_64")]
        "iopl" => libc::SYS_iopl,
        #[cfg(target_arch = "x86_64")]
        "ioperm" => libc::SYS_ioperm,
        "kexec_file_load" => libc::SYS_kexec_file_load,
        "kexec_load" => libc::SYS_kexec_load,
        "keyctl" => libc::SYS_keyctl,
        "lookup_dcookie" => libc::SYS_lookup_dcookie,
        "io_uring_enter" => libc::SYS_io_uring_enter,
        "io_uring_register" => libc::SYS_io_uring_register,
        "io_uring_setup" => libc::SYS_io_uring_setup,
        "mount" => libc::SYS_mount,
        "mount_setattr" => libc::SYS_mount_setattr,
        "move_mount" => libc::SYS_move_mount,
        "name_to_handle_at" => libc::SYS_name_to_handle_at,
        "open_by_handle_at" => libc::SYS_open_by_handle_at,
        "open_tree" => libc::SYS_open_tree,
        "perf_event_open" => libc::SYS_perf_event_open,
        "pivot_root" => libc::SYS_pivot_root,
        "process_vm_readv" => libc::SYS_process_vm_readv,
        "process_vm_writev" => libc::SYS_process_vm_writev,
        "ptrace" => libc::SYS_ptrace,
        "quotactl" => libc::SYS_quotactl,
        "reboot" => libc::SYS_reboot,
        "request_key" => libc::SYS_request_key,
        "setns" => libc::SYS_setns,
        "settimeofday" => libc::SYS_settimeofday,
        "clock_settime" => libc::SYS_clock_settime,
        "swapoff" => libc::SYS_swapoff,
        "swapon" => libc::SYS_swapon,
        "syslog" => libc::SYS_syslog,
        "umount2" => libc::SYS_umount2,
        "userfaultfd" => libc::SYS_userfaultfd,
        "vhangup" => libc::SYS_vhangup,
        _ => return None,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("no seccomp filter for architecture {0}")]
    Arch(&'static str),
    #[error("seccomp filter too large for a classic BPF jump")]
    TooLarge,
}

/// `AUDIT_ARCH_*` of this build's target (what `seccomp_data.arch` says for native syscalls).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

// Classic BPF as seccomp runs it (linux/filter.h, linux/seccomp.h).
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
// Offsets in struct seccomp_data: nr, arch, then args[0] (its low half first: little endian).
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARG0_LOW: u32 = 16;
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn stmt(code: u16, k: u32) -> seccompiler::sock_filter {
    seccompiler::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: usize, jf: usize) -> Result<seccompiler::sock_filter, FilterError> {
    Ok(seccompiler::sock_filter {
        code,
        jt: u8::try_from(jt).map_err(|_| FilterError::TooLarge)?,
        jf: u8::try_from(jf).map_err(|_| FilterError::TooLarge)?,
        k,
    })
}

/// The filter for app processes, one classic BPF program: a foreign architecture kills the
/// process; x32 syscalls and clone3 get ENOSYS (clone3 passes its flags in memory the filter
/// cannot read, so libc falls back to clone, whose flags it can); unshare and clone with
/// CLONE_NEWUSER get EPERM, and so does everything in [`DENIED`]; the rest is allowed.
///
/// Written out by hand rather than with seccompiler's rule compiler because of what installing
/// costs: the kernel evaluates a new filter for every syscall number to cache those it always
/// allows, and seccompiler's linear chain of ~240 instructions made that ~0.3 ms of every
/// container start. Here [`DENIED`] is searched as a binary tree: a handful of instructions
/// per syscall, one program instead of three.
pub fn app_filter() -> Result<BpfProgram, FilterError> {
    if std::env::consts::ARCH != "x86_64" && std::env::consts::ARCH != "aarch64" {
        return Err(FilterError::Arch(std::env::consts::ARCH));
    }
    let errno = |e: i32| RET_ERRNO | (e as u32 & 0xffff);
    let mut p = vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0)?,
        stmt(BPF_RET_K, RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, DATA_NR),
    ];
    // x32 syscalls carry the x86_64 audit arch with bit 30 set in the number, so they pass
    // the arch check and would match no rule: every denial here could be sidestepped on
    // kernels built with x32 support.
    #[cfg(target_arch = "x86_64")]
    p.extend([
        jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1)?,
        stmt(BPF_RET_K, errno(libc::ENOSYS)),
    ]);
    p.extend([
        jump(BPF_JEQ_K, libc::SYS_clone3 as u32, 0, 1)?,
        stmt(BPF_RET_K, errno(libc::ENOSYS)),
        jump(BPF_JEQ_K, libc::SYS_unshare as u32, 1, 0)?,
        jump(BPF_JEQ_K, libc::SYS_clone as u32, 0, 4)?,
        // Both take their flags in the first argument; CLONE_NEWUSER is in its low half.
        stmt(BPF_LD_W_ABS, DATA_ARG0_LOW),
        jump(BPF_JSET_K, libc::CLONE_NEWUSER as u32, 0, 1)?,
        stmt(BPF_RET_K, errno(libc::EPERM)),
        stmt(BPF_RET_K, RET_ALLOW),
    ]);
    let mut denied: Vec<u32> = DENIED
        .iter()
        .filter_map(|n| syscall_nr(n))
        .map(|nr| nr as u32)
        .collect();
    denied.sort_unstable();
    denied.dedup();
    search(&denied, errno(libc::EPERM), &mut p)?;
    Ok(p)
}

/// Appends code that returns `deny` if the syscall number (in A) is in `sorted`, else allows:
/// a binary search down to runs of a few numbers compared one by one.
fn search(
    sorted: &[u32],
    deny: u32,
    p: &mut Vec<seccompiler::sock_filter>,
) -> Result<(), FilterError> {
    if sorted.len() <= 4 {
        // jeq x_i jumps over the rest of the run and the ALLOW to the deny.
        for (i, nr) in sorted.iter().enumerate() {
            p.push(jump(BPF_JEQ_K, *nr, sorted.len() - i, 0)?);
        }
        p.push(stmt(BPF_RET_K, RET_ALLOW));
        p.push(stmt(BPF_RET_K, deny));
        return Ok(());
    }
    let (low, high) = sorted.split_at(sorted.len() / 2);
    let mut left = Vec::new();
    search(low, deny, &mut left)?;
    // A >= the first of the upper half: skip the code for the lower half.
    p.push(jump(BPF_JGE_K, high[0], left.len(), 0)?);
    p.extend(left);
    search(high, deny, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_denied_name_has_a_number() {
        for name in DENIED {
            #[cfg(not(target_arch = "x86_64"))]
            if matches!(*name, "iopl" | "ioperm") {
                continue;
            }
            assert!(syscall_nr(name).is_some(), "{name}");
        }
    }

    /// Runs a classic BPF seccomp program the way the kernel does, for the instructions
    /// these filters use.
    fn run(prog: &[seccompiler::sock_filter], nr: u32, arch: u32, arg0: u64) -> u32 {
        let word = |off: u32| match off {
            DATA_NR => nr,
            DATA_ARCH => arch,
            DATA_ARG0_LOW => arg0 as u32,
            20 => (arg0 >> 32) as u32,
            other => panic!("load of seccomp_data offset {other}"),
        };
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = &prog[pc];
            pc += 1;
            let taken = match i.code {
                BPF_LD_W_ABS => {
                    a = word(i.k);
                    continue;
                }
                BPF_RET_K => return i.k,
                BPF_JEQ_K => a == i.k,
                BPF_JGE_K => a >= i.k,
                BPF_JSET_K => a & i.k != 0,
                // seccompiler's 64-bit argument checks.
                0x54 => {
                    a &= i.k; // BPF_ALU | BPF_AND | BPF_K
                    continue;
                }
                0x05 => {
                    pc += i.k as usize; // BPF_JMP | BPF_JA
                    continue;
                }
                other => panic!("instruction {other:#x}"),
            };
            pc += usize::from(if taken { i.jt } else { i.jf });
        }
    }

    /// What the kernel answers when several filters are installed: the most restrictive
    /// action (lowest action value), among equals the newest filter's.
    fn run_all(progs: &[BpfProgram], nr: u32, arch: u32, arg0: u64) -> u32 {
        let action = |r: u32| (r & 0xffff_0000) as i32;
        progs
            .iter()
            .rev()
            .map(|p| run(p, nr, arch, arg0))
            .reduce(|best, r| if action(r) < action(best) { r } else { best })
            .expect("a filter")
    }

    /// The filters as seccompiler built them before `app_filter` was written out by hand.
    fn reference() -> Vec<BpfProgram> {
        use seccompiler::{
            SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
            SeccompRule, TargetArch,
        };
        use std::collections::BTreeMap;
        let arch = TargetArch::try_from(std::env::consts::ARCH).expect("arch");
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for nr in DENIED.iter().filter_map(|n| syscall_nr(n)) {
            rules.insert(nr, vec![]);
        }
        let newuser = libc::CLONE_NEWUSER as u64;
        let flag_rule = || {
            SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(newuser),
                newuser,
            )
            .expect("condition")])
            .expect("rule")
        };
        rules.insert(libc::SYS_unshare, vec![flag_rule()]);
        rules.insert(libc::SYS_clone, vec![flag_rule()]);
        let main = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )
        .expect("main");
        let clone3 = SeccompFilter::new(
            BTreeMap::from([(libc::SYS_clone3, vec![])]),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )
        .expect("clone3");
        let mut progs: Vec<BpfProgram> = vec![
            main.try_into().expect("main"),
            clone3.try_into().expect("clone3"),
        ];
        #[cfg(target_arch = "x86_64")]
        progs.push(vec![
            stmt(BPF_LD_W_ABS, 0),
            jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1).expect("jump"),
            stmt(BPF_RET_K, RET_ERRNO | libc::ENOSYS as u32),
            stmt(BPF_RET_K, RET_ALLOW),
        ]);
        progs
    }

    #[test]
    fn filter_decides_every_syscall_as_specified() {
        let prog = app_filter().expect("filter");
        let eperm = RET_ERRNO | libc::EPERM as u32;
        let enosys = RET_ERRNO | libc::ENOSYS as u32;
        let denied: Vec<u32> = DENIED
            .iter()
            .filter_map(|n| syscall_nr(n))
            .map(|n| n as u32)
            .collect();
        for nr in 0..1024u32 {
            let want = if nr == libc::SYS_clone3 as u32 {
                enosys
            } else if denied.contains(&nr) {
                eperm
            } else {
                RET_ALLOW
            };
            assert_eq!(run(&prog, nr, AUDIT_ARCH, 0), want, "syscall {nr}");
            // Another architecture's numbers mean other syscalls: never allowed.
            assert_eq!(run(&prog, nr, 0x4000_0003, 0), RET_KILL_PROCESS, "{nr}");
        }
        for nr in [libc::SYS_unshare as u32, libc::SYS_clone as u32] {
            let newuser = libc::CLONE_NEWUSER as u64;
            assert_eq!(run(&prog, nr, AUDIT_ARCH, newuser), eperm);
            assert_eq!(run(&prog, nr, AUDIT_ARCH, newuser | 0x11), eperm);
            assert_eq!(run(&prog, nr, AUDIT_ARCH, 1 << 40 | newuser), eperm);
            assert_eq!(
                run(&prog, nr, AUDIT_ARCH, libc::CLONE_NEWNS as u64),
                RET_ALLOW
            );
            assert_eq!(run(&prog, nr, AUDIT_ARCH, 1 << 40), RET_ALLOW);
        }
        #[cfg(target_arch = "x86_64")]
        for nr in [0, 1, 59, 512, 547] {
            let x32 = X32_SYSCALL_BIT | nr;
            assert_eq!(run(&prog, x32, AUDIT_ARCH, 0), enosys, "x32 {nr}");
        }
    }

    #[test]
    fn filter_decides_like_the_seccompiler_filters_it_replaces() {
        let prog = app_filter().expect("filter");
        let reference = reference();
        let args = [
            0,
            libc::CLONE_NEWUSER as u64,
            libc::CLONE_NEWNS as u64 | libc::SIGCHLD as u64,
            u64::MAX,
            1 << 40,
        ];
        let mut numbers: Vec<u32> = (0..1024).collect();
        #[cfg(target_arch = "x86_64")]
        numbers.extend((0..600).map(|n| X32_SYSCALL_BIT | n));
        numbers.push(u32::MAX);
        for nr in numbers {
            for arch in [AUDIT_ARCH, 0x4000_0003] {
                for arg in args {
                    assert_eq!(
                        run(&prog, nr, arch, arg),
                        run_all(&reference, nr, arch, arg),
                        "syscall {nr:#x}, arch {arch:#x}, arg0 {arg:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn filter_is_small() {
        let prog = app_filter().expect("filter");
        assert!(prog.len() < 120, "{} instructions", prog.len());
    }
}
