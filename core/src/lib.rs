//! tinyraft core (being written).
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod error;
pub mod kv;
pub mod limits;
pub mod mem_storage;
pub mod message;
pub mod ring;
pub mod state_machine;
pub mod storage;
pub mod transport;
pub mod types;

pub use error::{DecodeError, Error, ProposeError, ProposeErrorKind};
pub use mem_storage::{MemStorage, MemStorageError};
pub use message::{Body, Message};
pub use state_machine::StateMachine;
pub use storage::{Storage, StorageError, StorageErrorKind};
pub use transport::Transport;
pub use types::*;
