from erpsync_tui.cli import main

main()
