"""The HTML side: pages (``pages``), sign-in (``auth``), the admin page (``admin``) and the picture files
the pages show (``files``)."""
