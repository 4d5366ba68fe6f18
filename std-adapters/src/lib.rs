//! std adapters for tinyraft (being written).

pub mod file_storage;
pub mod udp;

pub use file_storage::{FileStorage, FileStorageError, FileStorageOptions, FileStorageStats};
pub use udp::{
    ClusterKey, Incoming, KeyError, SendError, UdpClientConfig, UdpClientSocket, UdpConfig,
    UdpStats, UdpTransport,
};
