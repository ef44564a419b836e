//! `AdminSocket`: the local Unix socket (mode 0600) over which requests count as orch's own user.

use std::fs::Permissions;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixSocket};

/// How many connections may wait in the socket's backlog.
const BACKLOG: u32 = 128;

/// The socket's mode: read and write for its owner only (connecting needs write permission).
const SOCKET_MODE: u32 = 0o600;

/// A listening admin socket. Dropping it (at the end of `serve`) removes the socket file if it
/// is still the one this created.
#[derive(Debug)]
pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file created, so a drop never removes another file.
    identity: (u64, u64),
}

/// Why the admin socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum AdminSocketError {
    #[error("the admin socket {path} is in use by a running process")]
    InUse { path: PathBuf },
    #[error("{path} exists and is not a socket; orch will not remove it")]
    NotASocket { path: PathBuf },
    #[error("cannot create the admin socket {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl AdminSocket {
    /// Creates the socket at `path`, mode 0600, and listens on it. Needs a tokio runtime.
    ///
    /// A socket file left at `path` by a process that is gone (nothing accepts on it) is
    /// replaced; a file that is not a socket, or a socket something answers on, is an error.
    /// The caller should hold the daemon's single-writer lock, so a leftover file is stale.
    ///
    /// No moment exists in which another user could connect: a Unix socket accepts
    /// connections only once it listens, and connecting checks the file's permissions, so
    /// the file is chmod-ed to 0600 between `bind` and `listen`. The process umask is not
    /// touched (it is shared by every thread of the daemon).
    pub fn bind(path: impl Into<PathBuf>) -> Result<AdminSocket, AdminSocketError> {
        let path = path.into();
        let io_error = |source| AdminSocketError::Io {
            path: path.clone(),
            source,
        };
        remove_stale(&path)?;
        let socket = UnixSocket::new_stream().map_err(io_error)?;
        socket.bind(&path).map_err(io_error)?;
        let listening = std::fs::set_permissions(&path, Permissions::from_mode(SOCKET_MODE))
            .and_then(|()| std::fs::symlink_metadata(&path))
            .and_then(|metadata| {
                let identity = (metadata.dev(), metadata.ino());
                Ok((socket.listen(BACKLOG)?, identity))
            });
        match listening {
            Ok((listener, identity)) => Ok(AdminSocket {
                listener,
                path,
                identity,
            }),
            Err(source) => {
                let _ = std::fs::remove_file(&path);
                Err(io_error(source))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn listener(&self) -> &UnixListener {
        &self.listener
    }
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|metadata| (metadata.dev(), metadata.ino()) == self.identity);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Removes a socket file nothing accepts on; refuses anything else that is in the way.
fn remove_stale(path: &Path) -> Result<(), AdminSocketError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(AdminSocketError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !metadata.file_type().is_socket() {
        return Err(AdminSocketError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(AdminSocketError::InUse {
            path: path.to_path_buf(),
        }),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
            .map_err(|source| AdminSocketError::Io {
                path: path.to_path_buf(),
                source,
            }),
        Err(source) => Err(AdminSocketError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}
