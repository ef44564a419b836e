//! The scripted agent: a stand-in for Claude Code that follows the agent contract.
