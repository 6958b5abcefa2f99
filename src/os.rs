//! The few questions rekey asks the operating system directly (beyond process hardening,
//! src/harden.rs), each behind a safe function.

/// Whether a process with this id exists on this host (it may belong to another user).
pub fn process_exists(pid: u32) -> bool {
    // SAFETY: kill with signal 0 sends nothing; it only asks whether the process exists. It
    // reads no memory of ours, and any pid value is a valid argument.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
