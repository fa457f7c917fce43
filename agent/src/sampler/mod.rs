//! Sampling a process with perf_event_open: one event per thread and CPU, shared ring buffers.
