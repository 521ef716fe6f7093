"""The first head: a YOLOv5-family tumor detector trained and evaluated with ultralytics."""
