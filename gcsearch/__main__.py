from gcsearch.cli import main

main()
