"""The Streamlit entry point: `streamlit run frontend/app.py` (the API URL comes from FRONTEND_API_URL).

Streamlit puts this file's folder on sys.path, which is how `fashion_ui` is found without installing it.
"""

import logging

from fashion_ui.page import main

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
main()
