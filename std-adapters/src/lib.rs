//! std adapters for tinyraft (being written).
