"""Floor 5: the ``latent-vla`` command-line application on top of every other floor.

One module per subcommand (``collect_cli``, ``train_cli``, ``eval_cli``, ``inspect_cli``,
``export_cli``, ``run_cli``, ``demo_cli``), the dispatcher (``cli``) and the HTML reports
(``report``, ``demo_report``, ``screenshot``). Nothing below this floor imports it.
"""
