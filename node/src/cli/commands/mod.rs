//! One module per command group. Each reads its arguments, calls the data
//! dir or the core's typed handlers, and prints through [`super::Output`].

pub mod backup;
pub mod community;
pub mod init;
pub mod log;
pub mod market;
pub mod mcp;
pub mod member;
pub mod profile;
pub mod run;
pub mod status;
