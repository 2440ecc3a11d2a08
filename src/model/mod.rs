//! Model hyperparameters, weights and graph builders.
