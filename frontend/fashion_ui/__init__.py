"""The Streamlit UI of fashion-clip: settings, the API client and the page."""
