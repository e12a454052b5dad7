//! The `hearth` command line.
