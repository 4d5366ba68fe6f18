//! std adapters for tinyraft (being written).

pub mod file_storage;

pub use file_storage::{FileStorage, FileStorageError, FileStorageOptions, FileStorageStats};
