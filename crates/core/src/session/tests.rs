//! Scheduler tests: the scripted decoder and the energy detector drive a real session.
