"""The model zoo: models/ (pure nn.Modules), tasks/ (data, loss, evaluation), data/, eval/, metrics, plots."""
