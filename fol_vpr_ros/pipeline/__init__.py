"""The stages a frame flows through: describe (model -> descriptors), localize (global search), re-rank."""
