//! End-to-end tests of the binary: files in, rows, counters and exit codes out.

mod file_server;
mod stand_in;
mod support;
mod tmux;

mod api;
mod completions;
mod entities;
mod exports;
mod flexprice;
mod fuzz;
mod import;
mod locks;
mod messages;
mod progress;
mod real_files;
mod reliability;
mod signals;
mod sources;
mod tasks;
mod workers;
