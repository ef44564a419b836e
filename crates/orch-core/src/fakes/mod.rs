//! In-memory fakes of every port.
