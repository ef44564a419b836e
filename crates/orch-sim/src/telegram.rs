//! `TelegramSim`: the Bot API methods orch uses.
