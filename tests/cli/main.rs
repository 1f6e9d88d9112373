//! End-to-end tests of the binary: files in, rows, counters and exit codes out.

mod file_server;
mod stand_in;
mod support;

mod api;
mod completions;
mod duplicates;
mod entities;
mod exports;
mod fidelity;
mod flexprice;
mod fuzz;
mod import;
mod real_files;
mod reliability;
mod signals;
mod sources;
mod tasks;
mod values;
mod workers;
