// Replaced by the stage runtime.
