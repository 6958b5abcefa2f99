//! Whether another run's lease on a slot may still be in use. Claiming and proving the lease
//! (the fence): fence.rs.

use crate::record::Lease;

/// Whether the run holding `lease` may still be working. On this host we can tell for sure
/// (its process is gone after a crash); elsewhere only the lease's expiry tells.
pub fn lease_holder_alive(lease: &Lease, this_host: &str) -> bool {
    if lease.host != this_host {
        return true;
    }
    if lease.pid == std::process::id() {
        return true;
    }
    crate::os::process_exists(lease.pid)
}
