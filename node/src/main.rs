//! `hearth`: the HearthNet node's command line. Everything is in
//! [`hearth_node::cli`]; this file only hands over the exit code.

fn main() -> std::process::ExitCode {
    hearth_node::cli::main()
}
