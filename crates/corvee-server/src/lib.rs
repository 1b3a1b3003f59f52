//! corvee-server: the daemon. (Being built.)
