"""The trainers: CREAM and SCIR (config beside trainer, as in TRL), SFT, tracking, launch."""
