//! End-to-end tests of the binary: files in, rows, counters and exit codes out.

mod file_server;
mod stand_in;
mod support;

mod api;
mod completions;
mod dialects;
mod entities;
mod exports;
mod flexprice;
mod fuzz;
mod import;
mod reliability;
mod sources;
mod tasks;
mod workers;
