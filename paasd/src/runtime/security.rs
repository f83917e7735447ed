//! Dropping privileges right before exec: supplementary groups, gid/uid, every capability
//! (bounding, inheritable, ambient; permitted and effective go with the uid change),
//! `no_new_privs`, and the seccomp filter. Runs only in the helper's child. Must never be
//! skipped or reordered: the filter needs `no_new_privs`, the bounding set needs CAP_SETPCAP
//! (so it goes before the uid change).

use std::collections::BTreeMap;

use caps::CapSet;
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

type StageError = (String, String);

fn err(stage: &str, e: impl std::fmt::Display) -> StageError {
    (stage.to_string(), e.to_string())
}

/// `filters` come from [`app_filter`], built before fork so the child only installs them.
pub fn drop_privileges(uid: u32, gid: u32, filters: &[BpfProgram]) -> Result<(), StageError> {
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
    for f in filters {
        seccompiler::apply_filter(f).map_err(|e| err("apply seccomp filter", e))?;
    }
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

/// The filter for app processes: allow by default, EPERM for [`DENIED`] and for creating user
/// namespaces (unshare/clone with CLONE_NEWUSER); clone3 gets ENOSYS so libc falls back to
/// clone, whose flags the filter can see.
pub fn app_filter() -> Result<Vec<BpfProgram>, seccompiler::BackendError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| seccompiler::BackendError::InvalidTargetArch(std::env::consts::ARCH.into()))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in DENIED.iter().filter_map(|n| syscall_nr(n)) {
        rules.insert(nr, vec![]);
    }
    let newuser = libc::CLONE_NEWUSER as u64;
    let flag_rule = || {
        SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(newuser),
            newuser,
        )
        .and_then(|c| SeccompRule::new(vec![c]))
    };
    rules.insert(libc::SYS_unshare, vec![flag_rule()?]);
    rules.insert(libc::SYS_clone, vec![flag_rule()?]);
    let main = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    // clone3 passes its flags in memory the filter cannot read: make it look absent. A second
    // filter rather than a merged program: the kernel runs every installed filter and the
    // most restrictive answer wins.
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, vec![])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    let mut filters: Vec<BpfProgram> = vec![main.try_into()?, clone3.try_into()?];
    #[cfg(target_arch = "x86_64")]
    filters.push(no_x32());
    Ok(filters)
}

/// x32 syscalls carry the x86_64 audit arch with bit 30 set in the number, so they pass an
/// arch check and match no rule: without this, every denial above could be sidestepped on
/// kernels built with x32 support. They all get ENOSYS.
#[cfg(target_arch = "x86_64")]
fn no_x32() -> BpfProgram {
    use seccompiler::sock_filter;
    const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    let f = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        // seccomp_data.nr is at offset 0.
        f(BPF_LD_W_ABS, 0, 0, 0),
        f(BPF_JGE_K, 0, 1, X32_SYSCALL_BIT),
        f(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        f(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
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

    #[test]
    fn filter_builds() {
        let progs = app_filter().expect("filter");
        assert_eq!(
            progs.len(),
            if cfg!(target_arch = "x86_64") { 3 } else { 2 }
        );
        assert!(progs[0].len() > DENIED.len());
    }
}
