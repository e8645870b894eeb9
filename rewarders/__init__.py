"""Built-in rewarders: implicit DPO reward, LLM-as-a-judge, external oracle."""
