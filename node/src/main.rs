//! `hearth`: the HearthNet node's command line. Everything is in
//! [`hearth_node::cli`]; this file only hands over the exit code.

#[global_allocator]
static ALLOCATOR: hearth_node::NodeAllocator = hearth_node::NodeAllocator;

fn main() -> std::process::ExitCode {
    hearth_node::cli::main()
}
