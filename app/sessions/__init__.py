"""End-to-end jobs: one chat turn (store + engine), and a prompt turned into a gallery PNG."""
