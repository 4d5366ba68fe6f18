//! std adapters for tinyraft (being written).

pub mod udp;
pub use udp::{
    ClusterKey, Incoming, KeyError, SendError, UdpClientConfig, UdpClientSocket, UdpConfig,
    UdpStats, UdpTransport,
};
