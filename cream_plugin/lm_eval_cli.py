"""``python -m cream_plugin.lm_eval_cli ARGS``: lm-eval's own command line with ``cream-hf``.

lm-eval 0.4.13 finds models only in its registry, which it fills from its own package; it reads
no entry points. A plain ``lm_eval --model cream-hf`` works through the start-up hook that the
install ships (``_cream_lm_eval_hook``); where ``.pth`` files are not run (``python -S``), this
wrapper imports ``cream_plugin.evaluators.cream_hflm`` (which registers ``cream-hf``) and hands
the arguments, unchanged, to lm-eval's CLI (``lm_eval.__main__.cli_evaluate``): every lm-eval
option and subcommand works as with ``lm_eval``.
"""

from __future__ import annotations


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    import cream_plugin.evaluators.cream_hflm  # noqa: F401  (registers "cream-hf")

    cli_evaluate()


if __name__ == "__main__":
    main()
