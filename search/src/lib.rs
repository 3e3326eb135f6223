//! Embedders and hybrid search (being written).
