//! A Taegis-compatible API emulator (and, later, Cisco): the test server and the demo's platform.

/// `rekey emulator` options.
#[derive(clap::Args, Debug, Clone)]
pub struct EmulatorArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:8484")]
    pub listen: std::net::SocketAddr,
}

pub async fn run(args: EmulatorArgs) -> crate::error::Result<()> {
    let _ = args;
    Err(crate::error::Error::config("the emulator is not built yet"))
}
